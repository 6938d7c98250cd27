"""The `patch` embedding with MAE masking projects only the visible patches: the same tokens, gradients and
masking outputs as convolving every patch and then dropping the hidden ones."""

from __future__ import annotations

import pytest
import torch

from modalzoo.modalities.vision.embedding import PatchEmbedding, PatchEmbeddingConfig, masking_indices


def reference(emb: PatchEmbedding, pixels: torch.Tensor, noise: torch.Tensor):
    """The straightforward order: conv over all patches, add positions, mask, prepend the class token."""
    x = emb.proj(pixels).flatten(2).transpose(1, 2)
    offset = int(emb.cls is not None)
    if emb.position is not None:
        x = x + emb.position[:, offset:]
    ids_keep, _, mask, ids_restore = masking_indices(*x.shape[:2], emb.cfg.mask_ratio, noise)
    x = x.gather(1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
    if emb.cls is not None:
        cls = emb.cls if emb.position is None else emb.cls + emb.position[:, :1]
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
    return emb.norm(x), mask, ids_restore


@pytest.mark.parametrize("positions", ["sincos2d", "learned", "none"])
@pytest.mark.parametrize("cls_token", [True, False])
def test_visible_patches_only_equals_conv_then_mask(positions, cls_token):
    torch.manual_seed(0)
    emb = PatchEmbedding(PatchEmbeddingConfig(image_size=32, patch_size=8, dim=24, positions=positions,
                                              cls_token=cls_token, mask_ratio=0.75, norm="layernorm"))
    emb.init_weights()
    if isinstance(emb.position, torch.nn.Parameter):
        torch.nn.init.normal_(emb.position)
    g = torch.Generator().manual_seed(1)
    pixels, noise = torch.randn(5, 3, 32, 32, generator=g), torch.rand(5, 16, generator=g)

    out = emb({"pixel_values": pixels, "mae_noise": noise})
    out.x.pow(2).sum().backward()
    grads = {n: p.grad.clone() for n, p in emb.named_parameters()}
    emb.zero_grad()
    ref, mask, ids_restore = reference(emb, pixels, noise)
    ref.pow(2).sum().backward()

    assert out.x.shape == (5, 4 + cls_token, 24)
    torch.testing.assert_close(out.x, ref, atol=1e-5, rtol=0)
    assert torch.equal(out.extras["mae_mask"], mask) and torch.equal(out.extras["ids_restore"], ids_restore)
    for name, p in emb.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, atol=1e-4, rtol=1e-5, msg=name)


def test_masking_indices_partition_the_patches():
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(2))
    ids_keep, ids_hidden, mask, ids_restore = masking_indices(3, 16, 0.75, noise)
    assert ids_keep.shape == (3, 4) and ids_hidden.shape == (3, 12)
    assert torch.equal(torch.cat([ids_keep, ids_hidden], 1).sort(1).values, torch.arange(16).expand(3, 16))
    assert (noise.gather(1, ids_keep).amax(1) < noise.gather(1, ids_hidden).amin(1)).all()   # lowest noise kept
    assert (mask.gather(1, ids_keep) == 0).all() and (mask.gather(1, ids_hidden) == 1).all()
    ids_shuffle = torch.cat([ids_keep, ids_hidden], 1)
    assert torch.equal(ids_shuffle.gather(1, ids_restore), torch.arange(16).expand(3, 16))   # unshuffles


def test_no_masking_keeps_the_conv_path():
    torch.manual_seed(0)
    emb = PatchEmbedding(PatchEmbeddingConfig(image_size=16, patch_size=4, dim=8))
    pixels = torch.randn(2, 3, 16, 16)
    out = emb({"pixel_values": pixels})
    expected = emb.proj(pixels).flatten(2).transpose(1, 2) + emb.position[:, 1:]
    assert out.x.shape == (2, 17, 8) and not out.extras
    torch.testing.assert_close(out.x[:, 1:], expected, atol=0, rtol=0)


def test_masked_images_of_another_size_are_refused():
    emb = PatchEmbedding(PatchEmbeddingConfig(image_size=16, patch_size=4, dim=8, mask_ratio=0.75))
    with pytest.raises(ValueError, match="position table has 16"):
        emb({"pixel_values": torch.randn(2, 3, 8, 8)})
