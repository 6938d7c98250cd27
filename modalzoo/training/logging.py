"""Run logs: metrics.jsonl (one JSON object per line), TensorBoard events, and the loss-curve PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class MetricsLog:
    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.file = self.path.open("a", buffering=1)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        record = {"step": step, "split": split, **{k: _clean(v) for k, v in values.items()}}
        self.file.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curve(run_dir: Path, title: str = "") -> Path:
    """Train loss (and validation loss) against step; a second panel for accuracy-like metrics."""
    records = read_metrics(run_dir)
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    acc_keys = sorted({k for r in val for k in r if k.endswith("accuracy")})
    fig, axes = plt.subplots(1, 2 if acc_keys else 1, figsize=(11 if acc_keys else 6.5, 4), squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1.2)
    if val:
        ax.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", label="validation loss", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or Path(run_dir).name)
    if acc_keys:
        ax2 = axes[0][1]
        for key in acc_keys:
            pts = [(r["step"], r[key]) for r in val if key in r]
            ax2.plot(*zip(*pts), "o-", label=f"validation {key}")
        for key in acc_keys:
            pts = [(r["step"], r[key]) for r in train if key in r]
            if pts:
                ax2.plot(*zip(*pts), lw=0.8, alpha=0.6, label=f"train {key}")
        ax2.set_xlabel("step")
        ax2.set_ylabel("accuracy")
        ax2.grid(alpha=0.3)
        ax2.legend()
    fig.tight_layout()
    out = Path(run_dir) / "loss_curve.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
