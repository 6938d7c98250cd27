"""The `waveform_conv` front-end: frame counts, padding, the mask embedding, the feature penalty and
feature_grad_mult, weight norm and init (parity with torchaudio and transformers: test_hubert_parity.py)."""

from __future__ import annotations

import pickle

import pytest
import torch

import modalzoo.modalities.audio.waveform as waveform
from modalzoo.registry import EMBEDDINGS

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"name": "waveform_conv", "dim": 32, "conv_dim": [16] * 7, "pos_conv_kernel": 16, "pos_conv_groups": 4}


def build(**kw) -> waveform.WaveformConvEmbedding:
    torch.manual_seed(0)
    emb = EMBEDDINGS.build({**TINY, **kw})
    emb.init_weights()
    return emb


def clips(lengths, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    waves = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        waves[i, :n] = torch.randn(n, generator=g) * 0.1
    return {"input_values": waves, "audio_lengths": torch.tensor(lengths)}


def test_frame_count_formula_matches_the_convolutions_and_the_references():
    from transformers import HubertConfig, HubertModel
    hf = HubertModel(HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                                  conv_dim=[8] * 7, num_conv_pos_embedding_groups=4, num_conv_pos_embeddings=8))
    emb = build()
    lengths = torch.tensor([400, 401, 719, 720, 16000, 16319, 16320, 47999])
    frames = emb.frame_lengths(lengths)
    assert frames.tolist() == ((lengths - 400) // 320 + 1).tolist()      # 1 s -> 49 frames
    assert frames.tolist() == hf._get_feat_extract_output_lengths(lengths).tolist()
    for n, f in zip(lengths.tolist(), frames.tolist()):
        with torch.no_grad():
            assert emb.features(torch.zeros(1, n)).shape[1] == f
    assert emb.frame_lengths(torch.tensor([0, 399])).tolist() == [0, 0]
    assert emb.cfg.hop == 320 and emb.cfg.receptive_field == 400


def test_padding_mask_and_padded_frames():
    """Padded frames are zeroed before the positions, so in layer mode a row's real frames are what the row
    alone gives; a group-norm first conv normalises over the padding too (as fairseq, torchaudio and HF do)."""
    batch = clips([16000, 8000])
    alone = {"input_values": batch["input_values"][1:, :8000], "audio_lengths": torch.tensor([8000])}
    for mode, same in (("layer", True), ("group", False)):
        emb = build(extractor_mode=mode).eval()
        with torch.no_grad():
            tokens, single = emb(batch), emb(alone)
        assert tokens.pad_mask.sum(1).tolist() == [49, 24] and tokens.right_padded
        assert single.pad_mask is None                   # no padded row: the encoder's fast path
        assert torch.allclose(tokens.x[1, :24], single.x[0], atol=1e-5) == same


def test_mask_embedding_replaces_exactly_the_marked_frames():
    emb = build(norm="none", pos_conv_kernel=2, pos_conv_groups=1).eval()
    with torch.no_grad():
        emb.pos_conv.bias.fill_(-1e4)                # GELU(-1e4) = 0: positions add nothing, frames stay visible
    batch = clips([16000, 16000])
    mask = torch.zeros(2, 49, dtype=torch.bool)
    mask[0, 3:13] = True
    mask[1, 40:] = True
    with torch.no_grad():
        plain = emb(batch).x
        masked = emb({**batch, "mask_frames": mask}).x
    assert torch.equal(masked[mask], emb.mask_emb.expand(int(mask.sum()), -1))
    assert torch.equal(masked[~mask], plain[~mask])
    with pytest.raises(ValueError, match="mask_frames"):
        emb({**batch, "mask_frames": mask[:, :10]})


def test_feature_penalty_and_feature_grad_mult():
    batch = clips([16000, 12000])
    grads = {}
    for mult in (1.0, 0.1):
        emb = build(feature_grad_mult=mult)
        tokens = emb(batch)
        assert tokens.extras["features_pen"].item() == pytest.approx(
            emb.features(batch["input_values"]).pow(2).mean().item(), rel=1e-6)
        (tokens.x.square().mean() + tokens.extras["features_pen"]).backward()
        grads[mult] = (emb.convs[0].conv.weight.grad.clone(), emb.projection.weight.grad.clone())
    assert torch.allclose(grads[0.1][0], 0.1 * grads[1.0][0], rtol=1e-4, atol=1e-9)   # front-end scaled
    assert torch.allclose(grads[0.1][1], grads[1.0][1], rtol=1e-5, atol=1e-9)         # the rest is not
    frozen = build(feature_grad_mult=0.0)
    frozen(batch).x.sum().backward()
    assert all(b.conv.weight.grad is None for b in frozen.convs) and frozen.projection.weight.grad is not None


def test_weight_norm_init_and_names():
    emb = build()
    pos = emb.pos_conv
    g, v = pos.parametrizations.weight.original0, pos.parametrizations.weight.original1
    assert g.shape == (1, 1, 16) and v.shape == (32, 8, 16)         # weight norm over dim 2, as fairseq/HF
    std = (4.0 / (16 * 32)) ** 0.5
    assert 0.7 * std < pos.weight.std().item() < 1.3 * std and pos.bias.abs().max() == 0
    assert 0 <= emb.mask_emb.min() and emb.mask_emb.max() < 1                            # uniform [0, 1)
    assert emb.convs[0].norm.no_decay == ("weight",) and emb.convs[1].norm is None
    layer = build(extractor_mode="layer", conv_bias=True)
    assert all(isinstance(b.norm, waveform.ChannelLayerNorm) and b.conv.bias is not None for b in layer.convs)


def test_maskable_is_picklable_and_gives_real_frames():
    fn = pickle.loads(pickle.dumps(build().maskable()))
    real = fn(clips([16000, 4000]))
    assert real.shape == (2, 49) and real.sum(1).tolist() == [49, 12]


@pytest.mark.parametrize("bad", [{"conv_kernel": [10, 3]}, {"feature_grad_mult": 2.0}, {"pos_conv_groups": 5}])
def test_bad_config_is_named(bad):
    from modalzoo.errors import ConfigError
    with pytest.raises(ConfigError):
        EMBEDDINGS.build({**TINY, **bad}, "model.streams.audio.embedding")
