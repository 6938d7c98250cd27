"""The fbank_patch embedding: its features are ASTFeatureExtractor's, its tokens ASTPatchEmbeddings' layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalzoo.modalities.audio.fbank import FbankPatchConfig, FbankPatchEmbedding
from shapes_clap import FBANK, audio_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def embedding(**kw) -> FbankPatchEmbedding:
    cfg = {k: v for k, v in FBANK.items() if k != "name"}
    torch.manual_seed(0)
    emb = FbankPatchEmbedding(FbankPatchConfig(**{**cfg, **kw}))
    emb.init_weights()
    return emb.eval()


def test_features_are_the_ast_feature_extractor_s():
    from transformers import ASTFeatureExtractor
    emb = embedding(max_frames=30)
    batch = audio_batch()            # 7000 samples = 42 frames (cut to 30), 3000 = 17, 2000 = 11 (padded)
    extractor = ASTFeatureExtractor(sampling_rate=16000, num_mel_bins=16, max_length=30, mean=-6.0, std=3.0)
    clips = [batch["input_values"][i, :n].numpy() for i, n in enumerate(batch["audio_lengths"].tolist())]
    want = extractor(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    got = emb.features(batch)
    assert got.shape == want.shape == (3, 30, 16)
    assert (got - want).abs().max().item() <= 1e-4
    assert torch.allclose(got[2, 11:], torch.full((19, 16), 1.0))    # padding frames: (0 - mean) / (2 std)
    raw = embedding(max_frames=30, normalize=False).features(batch)
    assert torch.allclose((raw + 6.0) / 6.0, got)


def test_a_clip_shorter_than_one_window_is_all_padding():
    batch = audio_batch()
    batch["audio_lengths"][2] = 300          # < 400 samples (25 ms): no frame (ASTFeatureExtractor raises here)
    got = embedding(max_frames=30).features(batch)
    assert torch.equal(got[2], torch.full((30, 16), 1.0))


def test_tokens_are_prefix_then_patches_frequency_outer():
    emb = embedding()
    f, t = emb.cfg.grid
    assert (f, t) == (2, 9) and emb.cfg.frequency_stride == 8 and emb.cfg.time_stride == 4  # time overlap
    batch = audio_batch()
    feats = emb.features(batch)
    with torch.no_grad():
        tokens = emb.embed(feats).x
    assert tokens.shape == (3, 2 + f * t, FBANK["dim"])
    pos = emb.position[0]
    assert torch.allclose(tokens[:, 0], (emb.cls + pos[0])[0].expand(3, -1))
    assert torch.allclose(tokens[:, 1], (emb.distillation + pos[1])[0].expand(3, -1))
    grid = feats.transpose(1, 2)                                      # [B, F, T]
    for fi, ti in [(0, 0), (0, 5), (1, 0), (1, 8)]:
        patch = grid[:, fi * 8:fi * 8 + 8, ti * 4:ti * 4 + 8]
        want = (patch.flatten(1) @ emb.proj.weight.flatten(1).T) + emb.proj.bias + pos[2 + fi * t + ti]
        assert torch.allclose(tokens[:, 2 + fi * t + ti], want, atol=1e-5)


def test_one_prefix_token_and_no_gradient_into_the_waveform():
    emb = embedding(prefix_tokens=1).train()
    batch = audio_batch()
    batch["input_values"].requires_grad_(True)
    out = emb(batch).x
    assert out.shape[1] == 1 + 18 and emb.distillation is None
    out.sum().backward()
    assert batch["input_values"].grad is None and emb.proj.weight.grad is not None


def test_without_lengths_the_whole_row_is_the_clip():
    emb = embedding()
    batch = audio_batch()
    full = {"input_values": batch["input_values"][:1]}
    assert torch.equal(emb.features(full), emb.features({**full, "audio_lengths": batch["audio_lengths"][:1]}))


@pytest.mark.parametrize("bad, match", [({"patch_size": 32}, "larger than num_mel_bins"),
                                        ({"prefix_tokens": 3}, "prefix_tokens"), ({"std": 0.0}, "std")])
def test_bad_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        FbankPatchConfig(**{**{k: v for k, v in FBANK.items() if k != "name"}, **bad})


def test_features_run_in_float32_under_bf16_autocast():
    emb = embedding()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = emb.features(audio_batch())
        tokens = emb.embed(feats).x
    assert feats.dtype == torch.float32 and torch.isfinite(tokens.float()).all()
    assert np.isfinite(feats.numpy()).all()
