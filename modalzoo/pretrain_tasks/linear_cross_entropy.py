"""Cross-entropy of a linear head, ``mean_i CE(h_i @ W.T, t_i)``, without the [N, V] logits: the rows go
through in chunks, and each chunk's gradient (softmax - onehot) is turned into the gradients of ``h`` and ``W``
during the forward, while the chunk is still in cache. The autograd way materialises the logits, their
log-softmax, a zero-filled gradient of the same size and the softmax backward: four passes over N x V floats
in fresh memory, ~36 % of a small causal-LM step on CPU (BENCHMARKS.md, "Text objectives"), and N x V x 8
bytes of peak memory, which dominates large-vocabulary steps on GPUs too. The same idea as Liger-Kernel's
fused linear cross-entropy; written with torch ops only.

The backward multiplies the saved gradients by the incoming scalar gradient, so the loss may be scaled or
summed with other losses; it must not be differentiated twice. The row-max pass that stabilises the softmax
also gives the argmax, so the accuracy metric costs nothing more.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_BYTES = 16 << 20         # one chunk's fp32 logits: big enough for efficient matmuls, small beside N x V


def chunk_rows(n: int, vocab: int) -> int:
    return min(n, max(256, CHUNK_BYTES // (4 * max(vocab, 1))))


def _chunks(h: Tensor, weight: Tensor, targets: Tensor, want_grad: bool):
    """(loss sum, correct count, grad_h, grad_w): the gradients of the SUM of the row losses."""
    n, vocab = h.shape[0], weight.shape[0]
    rows = chunk_rows(n, vocab)
    fp32 = h.dtype == weight.dtype == torch.float32
    grad_h = torch.empty_like(h) if want_grad else None
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if want_grad else None
    loss = torch.zeros((), dtype=torch.float32, device=h.device)
    correct = torch.zeros((), dtype=torch.long, device=h.device)
    buf = torch.empty(rows, vocab, dtype=torch.float32, device=h.device)
    for start in range(0, n, rows):
        hc, tc = h[start:start + rows], targets[start:start + rows, None]
        logits = buf[:hc.shape[0]]
        if fp32:
            torch.mm(hc, weight.t(), out=logits)
        else:
            logits.copy_(hc @ weight.t())
        top, arg = logits.max(1)
        correct += (arg == tc[:, 0]).sum()
        picked = logits.gather(1, tc)[:, 0]
        total = logits.sub_(top[:, None]).exp_().sum(1)
        loss += (total.log() + top - picked).sum()
        if want_grad:
            logits.div_(total[:, None]).scatter_add_(1, tc, logits.new_full(tc.shape, -1.0))   # softmax - onehot
            if fp32:
                torch.mm(logits, weight, out=grad_h[start:start + hc.shape[0]])
            else:
                grad_h[start:start + hc.shape[0]] = logits.to(h.dtype) @ weight
            grad_w.addmm_(logits.t(), hc.float())
    return loss, correct, grad_h, grad_w


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, targets: Tensor):
        want = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        with torch.autocast(h.device.type, enabled=False):
            loss, correct, grad_h, grad_w = _chunks(h.detach(), weight.detach(), targets, want)
        ctx.n = h.shape[0]
        if want:
            ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        ctx.mark_non_differentiable(correct)
        return loss / ctx.n, correct

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_correct):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_loss / ctx.n
        return (grad_h * scale.to(grad_h.dtype) if ctx.needs_input_grad[0] else None,
                grad_w * scale.to(grad_w.dtype) if ctx.needs_input_grad[1] else None, None)


def linear_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(mean cross-entropy of ``h @ weight.T`` [N, V] against ``targets`` [N], top-1 accuracy), both scalars;
    ``h`` [N, D], ``weight`` [V, D]. Equal to ``F.cross_entropy(F.linear(h, weight).float(), targets)`` up to
    float rounding, its gradients too (tests/pretrain_tasks/test_linear_cross_entropy.py). Under autocast the
    matmuls run in its dtype and the softmax in fp32, as autocast would run them. Every target must be a class
    (select the predicted rows first); no rows give NaN, as cross_entropy does."""
    if torch.is_autocast_enabled(h.device.type):
        dtype = torch.get_autocast_dtype(h.device.type)
        h, weight = h.to(dtype), weight.to(dtype)
    if h.shape[0] == 0:
        loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, weight).float(), targets)
        return loss, loss.detach()
    loss, correct = _LinearCrossEntropy.apply(h, weight, targets)
    return loss, correct.float() / h.shape[0]
