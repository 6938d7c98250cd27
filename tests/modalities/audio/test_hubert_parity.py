"""The zoo's HuBERT computes what the references compute with the same weights (fp32, max |Δ| <= 1e-4):
`torchaudio.models.hubert_pretrain_model` (masked and unmasked logits, the feature penalty, the loss and its
gradients, on the same span mask) and transformers' `HubertModel` (every layer's hidden states), for a post-norm
group-norm model (HuBERT Base's layout) and a pre-norm layer-norm one (Large's), tiny; plus the published
Base shape once (slow). Weights go through `modalzoo.modalities.audio.hub.hubert`'s copy functions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchaudio.models.wav2vec2.components as ta_components
import transformers
from torchaudio.models import hubert_pretrain_base, hubert_pretrain_model

import modalzoo
import modalzoo.modalities.audio.hub.hubert as hub
import modalzoo.modalities.audio.hubert  # noqa: F401  (registers the target)
import modalzoo.modalities.audio.waveform  # noqa: F401  (registers the embedding)
from modalzoo.datasets.fields import DataContext
from tiny_models import perturbed

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-4


def tiny_spec(layout: str) -> dict:
    post = layout == "base"
    return {"streams": {"audio": {
        "embedding": {"name": "waveform_conv", "dim": 32, "conv_dim": [24] * 7, "pos_conv_kernel": 16,
                      "pos_conv_groups": 4, "extractor_mode": "group" if post else "layer", "conv_bias": not post,
                      "norm": "layernorm" if post else "none"},
        "encoder": {"name": "transformer", "layers": 2, "dim": 32, "heads": 4, "ffn_dim": 64, "prenorm": not post,
                    "final_norm": not post}}},
        "targets": {"hubert": {"name": "hubert", "stream": "audio", "num_classes": 20, "final_dim": 16}}}


def frames_batch(model, lengths, classes: int, seed: int = 1) -> dict:
    """Clips with one unit per frame (50 Hz labels), masked by the zoo's batch transform."""
    g = torch.Generator().manual_seed(seed)
    waves = torch.zeros(len(lengths), max(lengths))
    frames = model.streams.audio.embedding.frame_lengths(torch.tensor(lengths))
    units = torch.full((len(lengths), int(frames.max())), -100)
    for i, (n, f) in enumerate(zip(lengths, frames.tolist())):
        waves[i, :n] = torch.randn(n, generator=g) * 0.1
        units[i, :f] = torch.randint(classes, (f,), generator=g)
    batch = {"input_values": waves, "audio_lengths": torch.tensor(lengths), "units": units, "unit_lengths": frames}
    return model.batch_transforms(DataContext(label_rate=50.0, sample_rate=16000))[0](batch, g)


def pair(spec: dict):
    torch.manual_seed(0)
    zoo = perturbed(modalzoo.build_model(spec), std=0.05)
    ta = hubert_pretrain_model(**hub.torchaudio_kwargs(spec)).eval()
    ta.load_state_dict(hub.zoo_to_torchaudio(zoo.state_dict(), spec), strict=True)
    return zoo, ta


def in_zoo_order(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """torchaudio's [N, 1 + C] (the positive first, its own column -inf) as [N, C] over the classes."""
    out = logits[:, 1:].clone()
    out[torch.arange(len(targets)), targets] = logits[:, 0]
    return out


def run_both(zoo, ta, batch, monkeypatch):
    mask = batch["mask_frames"]
    monkeypatch.setattr(ta_components, "_compute_mask_indices", lambda *a, **k: mask.clone())
    logit_m, logit_u, pen = ta(batch["input_values"], batch["frame_units"].clamp(min=0), batch["audio_lengths"])
    hidden = zoo.streams.audio(batch).hidden
    return hidden, logit_m, logit_u, pen


@pytest.mark.parametrize("layout", ["base", "large"])
def test_logits_penalty_loss_and_gradients_match_torchaudio(layout, monkeypatch):
    spec = tiny_spec(layout)
    zoo, ta = pair(spec)
    batch = frames_batch(zoo, [16000, 12000, 7000], classes=20)
    units, masked = batch["frame_units"], batch["mask_frames"]
    unmasked = (units != -100) & ~masked
    hidden, logit_m, logit_u, pen = run_both(zoo, ta, batch, monkeypatch)
    head = zoo.targets.hubert
    diffs = {"logit_m": (head.logits(hidden.x[masked]) - in_zoo_order(logit_m, units[masked])).abs().max(),
             "logit_u": (head.logits(hidden.x[unmasked]) - in_zoo_order(logit_u, units[unmasked])).abs().max(),
             "features_pen": (hidden.extras["features_pen"] - pen).abs()}
    print(layout, {k: f"{v.item():.2g}" for k, v in diffs.items()})
    assert max(d.item() for d in diffs.values()) <= TOL

    # the loss (pytorch/audio's hubert_loss: masked CE + 10 x penalty, per masked frame) and its gradients
    ta_loss = F.cross_entropy(logit_m, torch.zeros(len(logit_m), dtype=torch.long)) + 10 * pen
    ta_loss.backward()
    zoo_loss = zoo(batch).loss
    zoo_loss.backward()
    assert abs(zoo_loss.item() - ta_loss.item()) <= TOL
    ta_params = dict(ta.named_parameters())
    for zoo_name, ta_name in [("streams.audio.embedding.convs.0.conv.weight",
                               "wav2vec2.feature_extractor.conv_layers.0.conv.weight"),
                              ("streams.audio.embedding.mask_emb", "mask_generator.mask_embedding"),
                              ("streams.audio.encoder.blocks.1.mlp.fc2.weight",
                               "wav2vec2.encoder.transformer.layers.1.feed_forward.output_dense.weight"),
                              ("targets.hubert.label_embeddings", "logit_generator.label_embeddings")]:
        zg = dict(zoo.named_parameters())[zoo_name].grad
        tg = ta_params[ta_name].grad
        assert (zg - tg).abs().max() <= TOL * max(1.0, tg.abs().max().item()), zoo_name


@pytest.mark.parametrize("layout", ["base", "large"])
def test_hidden_states_match_transformers_and_weights_round_trip(layout):
    spec = tiny_spec(layout)
    zoo, _ = pair(spec)
    hf = transformers.HubertModel(transformers.HubertConfig(**hub.hf_config_kwargs(spec))).eval()
    hf.load_state_dict(hub.zoo_to_hf(zoo.state_dict(), spec), strict=True)
    diffs = hub.compare_hidden(zoo.streams.audio, hf, hub.waveform_batch())
    print(layout, diffs)
    assert max(diffs.values()) <= TOL
    back = hub.hf_to_zoo(hf.state_dict(), spec)
    stream_keys = {k for k in zoo.state_dict() if k.startswith("streams.audio.")}
    assert set(back) == stream_keys                     # the mapping covers the whole stream
    assert all(torch.equal(back[k], zoo.state_dict()[k]) for k in back)


def test_unmapped_and_missing_keys_are_named():
    spec = tiny_spec("base")
    zoo, _ = pair(spec)
    hf_state = hub.zoo_to_hf(zoo.state_dict(), spec)
    with pytest.raises(modalzoo.ModalzooError, match="unmapped extra.weight"):
        hub.hf_to_zoo({**hf_state, "extra.weight": torch.zeros(1)}, spec)
    hf_state.pop("masked_spec_embed")
    with pytest.raises(modalzoo.ModalzooError, match="missing masked_spec_embed"):
        hub.hf_to_zoo(hf_state, spec)


@pytest.mark.parametrize("key,value", [("encoder.prenorm", True), ("encoder.activation", "relu"),
                                       ("embedding.dropout", 0.3)])
def test_what_hubert_cannot_express_is_named(key, value):
    spec = tiny_spec("base")
    slot, option = key.split(".")
    spec["streams"]["audio"][slot][option] = value
    with pytest.raises(modalzoo.ModalzooError, match=option):
        hub.hf_config_kwargs(spec)


@pytest.mark.slow
def test_hubert_base_matches_torchaudio_and_transformers(monkeypatch):
    """The published 95M shape (the hubert_base recipe): parameter count equal to torchaudio's
    hubert_pretrain_base(num_classes=100), logits and hidden states within 1e-4."""
    cfg = modalzoo.load_recipe("hubert_base")
    spec = cfg.model
    torch.manual_seed(0)
    zoo = perturbed(modalzoo.build_model(cfg), std=0.01)
    ta = hubert_pretrain_base(num_classes=100, encoder_layer_drop=0.0).eval()
    assert sum(p.numel() for p in zoo.parameters()) == sum(p.numel() for p in ta.parameters()) == 94_594_176
    ta.load_state_dict(hub.zoo_to_torchaudio(zoo.state_dict(), spec), strict=True)
    batch = frames_batch(zoo, [16000, 11000], classes=100)
    units, masked = batch["frame_units"], batch["mask_frames"]
    with torch.no_grad():
        hidden, logit_m, _, pen = run_both(zoo, ta, batch, monkeypatch)
        logits = zoo.targets.hubert.logits(hidden.x[masked])
    assert (logits - in_zoo_order(logit_m, units[masked])).abs().max() <= TOL
    assert (hidden.extras["features_pen"] - pen).abs() <= TOL
    hf = transformers.HubertModel(transformers.HubertConfig(**hub.hf_config_kwargs(spec))).eval()
    hf.load_state_dict(hub.zoo_to_hf(zoo.state_dict(), spec), strict=True)
    diffs = hub.compare_hidden(zoo.streams.audio, hf, hub.waveform_batch())
    print("hubert_base", diffs)
    assert max(diffs.values()) <= TOL
