"""One place that turns a sequence's mask ingredients into the mask SDPA takes.

Convention everywhere: boolean, True = the query may attend to the key. Masks are [B, 1, Lq, Lk]
(broadcast over heads) or [B, 1, 1, Lk] when only padding is involved (cheaper), or None.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..tokens import Tokens


def causal_mask(length: int, device: torch.device) -> Tensor:
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def build_attention_mask(tokens: Tokens, causal: bool = False, prefix: bool = False) -> tuple[Tensor | None, bool]:
    """Return ``(mask, is_causal)`` for `scaled_dot_product_attention`.

    ``is_causal`` is only True when causality is the whole story, so SDPA can take its fast path.
    That includes causal attention over right-padded rows (``tokens.right_padded``): every real token
    only sees earlier positions, all real, so causality alone gives real tokens exactly what the
    explicit causal-and-padding mask would. Pad rows then also see the pads before them; their outputs
    stay finite and nothing reads them (pooling takes real tokens, losses ignore pads). This saves a
    [B, 1, L, L] mask per forward, which every layer keeps alive for backward (CLIP's text tower).
    """
    B, L = tokens.x.shape[:2]
    device = tokens.x.device
    padding_needs_mask = tokens.pad_mask is not None and not tokens.right_padded
    full_needed = (tokens.segment_ids is not None or tokens.attn_mask is not None
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


def is_right_padded(pad_mask: Tensor) -> bool:
    """Whether every row of a [B, L] padding mask (True = real) is real tokens followed only by pads.

    A host sync on an accelerator: callers check it where it is cheap (CPU), see `modalities/text.py`.
    """
    return not bool((pad_mask[:, 1:] & ~pad_mask[:, :-1]).any())     # no real token after a pad


def key_padding_mask(tokens: Tokens) -> Tensor | None:
    """Mask for cross-attention into ``tokens`` (a decoder attending to an encoder's output)."""
    return None if tokens.pad_mask is None else tokens.pad_mask[:, None, None, :]


def with_bias(mask: Tensor | None, is_causal: bool, bias: Tensor, length: int) -> Tensor:
    """Fold a boolean mask (or causality) into an additive float bias, for ALiBi."""
    if is_causal:
        mask = causal_mask(length, bias.device)[None, None]
    if mask is None:
        return bias
    return bias.masked_fill(~mask, float("-inf"))
