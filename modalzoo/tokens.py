"""`Tokens`: what an embedding hands an encoder and an encoder hands the next slot.

It carries the hidden states together with the raw ingredients of the attention mask (padding, packed
segments, a per-sample mask, a prefix length, a per-sample additive bias). The encoder combines them with
its own causality into one SDPA mask (`encoders/masks.py`), so every modality describes its sequence the
same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Tokens:
    x: Tensor                            # [B, L, D] hidden states
    pad_mask: Tensor | None = None       # [B, L] bool, True = real token; None = no padding
    segment_ids: Tensor | None = None    # [B, L] long; packed documents attend only within equal ids
    positions: Tensor | None = None      # [B, L] long position ids (reset per packed document)
    attn_mask: Tensor | None = None      # [B, L, L] bool, True = may attend (e.g. graph-guided)
    prefix_len: Tensor | None = None     # [B] long; prefix-LM: bidirectional inside the prefix
    # [B, H, L, L] or [B, 1, L, L] float, added to the attention logits of every layer (Graphormer's
    # shortest-path and edge biases: computed once by the embedding). Finite; mask with the fields above.
    attn_bias: Tensor | None = None
    # True = padding (if any) only follows the real tokens of each row. A causal stack then needs no
    # explicit mask: a real token only sees earlier positions, which are all real (`encoders/masks.py`).
    right_padded: bool = False
    extras: dict = field(default_factory=dict)  # slot-to-slot side data (e.g. MAE's ids_restore)

    def replace(self, **changes) -> Tokens:
        return dataclasses.replace(self, **changes)
