"""One place that turns a sequence's mask ingredients into the mask SDPA takes.

Convention everywhere: boolean, True = the query may attend to the key. Masks are [B, 1, Lq, Lk]
(broadcast over heads) or [B, 1, 1, Lk] when only padding is involved (cheaper), or None. With an
additive bias (ALiBi, `Tokens.attn_bias`) the mask becomes a float [B, H or 1, Lq, Lk]: the bias, with
-inf where the boolean mask says no.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..tokens import Tokens


def causal_mask(length: int, device: torch.device) -> Tensor:
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def build_attention_mask(tokens: Tokens, causal: bool = False, prefix: bool = False,
                         bias: Tensor | None = None) -> tuple[Tensor | None, bool]:
    """Return ``(mask, is_causal)`` for `scaled_dot_product_attention`.

    ``bias`` is the encoder's own additive bias (ALiBi, [B, H, L, L]); it is summed with the sequence's
    ``tokens.attn_bias`` (Graphormer's per-sample, per-head bias) and the boolean mask is folded into the
    sum as -inf. A per-sample bias always gets the full boolean mask, so every row keeps its diagonal
    (the bias itself must be finite: hide keys with ``pad_mask`` / ``attn_mask``, not with -inf).
    Without ``tokens.attn_bias`` the boolean mask and its fast paths are the bias-free ones, unchanged.

    ``is_causal`` is only True when causality is the whole story, so SDPA can take its fast path.
    That includes causal attention over right-padded rows (``tokens.right_padded``): every real token
    only sees earlier positions, all real, so causality alone gives real tokens exactly what the
    explicit causal-and-padding mask would. Pad rows then also see the pads before them; their outputs
    stay finite and nothing reads them (pooling takes real tokens, losses ignore pads). This saves a
    [B, 1, L, L] mask per forward, which every layer keeps alive for backward (CLIP's text tower).
    """
    B, L = tokens.x.shape[:2]
    if tokens.attn_bias is not None:
        check_attn_bias(tokens.attn_bias, B, L)
        bias = tokens.attn_bias if bias is None else bias + tokens.attn_bias
    mask, is_causal = _boolean_mask(tokens, causal, prefix, full=tokens.attn_bias is not None)
    if bias is None:
        return mask, is_causal
    return with_bias(mask, is_causal, bias, L), False


def _boolean_mask(tokens: Tokens, causal: bool, prefix: bool, full: bool) -> tuple[Tensor | None, bool]:
    B, L = tokens.x.shape[:2]
    device = tokens.x.device
    padding_needs_mask = tokens.pad_mask is not None and not tokens.right_padded
    full_needed = (full or tokens.segment_ids is not None or tokens.attn_mask is not None
                   or (causal and padding_needs_mask) or prefix)
    if not full_needed:
        if causal:
            return None, True
        if tokens.pad_mask is None:
            return None, False
        return tokens.pad_mask[:, None, None, :], False

    mask = torch.ones(B, L, L, dtype=torch.bool, device=device)
    if causal or prefix:
        tri = causal_mask(L, device).expand(B, L, L)
        if prefix:
            if tokens.prefix_len is None:
                raise ValueError("a prefix-LM mask needs tokens.prefix_len")
            idx = torch.arange(L, device=device)
            in_prefix = idx[None, :] < tokens.prefix_len[:, None]           # [B, L]
            tri = tri | (in_prefix[:, None, :] & in_prefix[:, :, None])
        mask = mask & tri
    if tokens.pad_mask is not None:
        mask = mask & tokens.pad_mask[:, None, :]
    if tokens.segment_ids is not None:
        mask = mask & (tokens.segment_ids[:, :, None] == tokens.segment_ids[:, None, :])
    if tokens.attn_mask is not None:
        mask = mask & tokens.attn_mask.bool()
    # A token may always see itself: keeps fully masked rows (padding) finite instead of NaN.
    mask = mask | torch.eye(L, dtype=torch.bool, device=device)
    return mask[:, None], False


def cached_attention_mask(tokens: Tokens, start: int, key_pad: Tensor | None,
                          bias: Tensor | None = None) -> Tensor | None:
    """The mask of the L new tokens of a decoding step (positions ``start`` .. ``start + L - 1`` of the cache)
    over all ``start + L`` cached keys: causal, without the padded keys (``key_pad`` [B, start + L], True =
    real), each token seeing itself; with ``bias`` ([1 or B, H, L, start + L]: ALiBi, T5's relative bias)
    the bias with -inf where the mask says no. A single new token with no padding needs no mask at all.

    The prompt (the first forward) takes `build_attention_mask` with the stack's own mask (causal or
    prefix-LM), so a prefix attends to itself both ways; later tokens only look back."""
    if tokens.segment_ids is not None or tokens.attn_mask is not None or tokens.attn_bias is not None:
        raise ValueError("decoding with a KV cache takes plain rows after the first forward (padding at most): "
                         "segment_ids, attn_mask and attn_bias only in the first one")
    L, device = tokens.x.shape[1], tokens.x.device
    keys, queries = torch.arange(start + L, device=device), start + torch.arange(L, device=device)
    mask = None
    if L > 1:
        mask = (keys[None, :] <= queries[:, None])[None, None]                  # [1, 1, L, start + L]
    if key_pad is not None:
        mask = key_pad[:, None, None, :] if mask is None else mask & key_pad[:, None, None, :]
        mask = mask | (keys[None, :] == queries[:, None])                       # a row is never empty
    if bias is None:
        return mask
    return bias if mask is None else bias.masked_fill(~mask, float("-inf"))


def check_attn_bias(bias: Tensor, batch: int, length: int) -> None:
    """Shape and dtype only (no values: that would be a host sync); the heads are checked by the block."""
    if not bias.is_floating_point() or bias.dim() != 4 or bias.shape[0] != batch or bias.shape[2:] != (length, length):
        raise ValueError(f"tokens.attn_bias must be a float [B, H, L, L] or [B, 1, L, L] tensor with B={batch}, "
                         f"L={length}; got {bias.dtype} {list(bias.shape)}")


class RealPositions:
    """``fn(batch) -> BoolTensor[B, L]``: the positions holding real tokens, ``batch[pad_key]`` (True = real)
    or, without that key, every position of ``batch[ids_key]``. An embedding's default answer to which
    positions a token-level target may mask or predict (`TokenEmbedding.maskable`); it runs in loader
    workers, so it holds key names only, no module."""

    def __init__(self, pad_key: str = "attention_mask", ids_key: str = "input_ids"):
        self.pad_key, self.ids_key = pad_key, ids_key

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        if self.pad_key in batch:
            return batch[self.pad_key].bool()
        return torch.ones_like(batch[self.ids_key], dtype=torch.bool)


def is_right_padded(pad_mask: Tensor) -> bool:
    """Whether every row of a [B, L] padding mask (True = real) is real tokens followed only by pads.

    A host sync on an accelerator: callers check it where it is cheap (CPU), see `modalities/text/embedding.py`.
    """
    return not bool((pad_mask[:, 1:] & ~pad_mask[:, :-1]).any())     # no real token after a pad


def key_padding_mask(tokens: Tokens) -> Tensor | None:
    """Mask for cross-attention into ``tokens`` (a decoder attending to an encoder's output)."""
    return None if tokens.pad_mask is None else tokens.pad_mask[:, None, None, :]


def with_bias(mask: Tensor | None, is_causal: bool, bias: Tensor, length: int) -> Tensor:
    """Fold a boolean mask (or causality) into an additive float bias (ALiBi, `Tokens.attn_bias`)."""
    if is_causal:
        mask = causal_mask(length, bias.device)[None, None]
    if mask is None:
        return bias
    return bias.masked_fill(~mask, float("-inf"))
