"""`make demo`'s steps, shortened: train the digits CLIP, evaluate it, export it for transformers, classify
held-out digits with transformers' zero-shot-image-classification pipeline from the export alone. The
Makefile's recipe is read here, so the test runs the same commands the demo runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
SHRINK = ["trainer.max_steps=6", "trainer.batch_size=32", "trainer.eval_every=6", "trainer.eval_batches=2",
          "trainer.checkpoint_every=6", "trainer.warmup_steps=2", "trainer.progress=false", "data.num_workers=0"]


def demo_commands() -> list[str]:
    """The `demo:` recipe lines of the Makefile, variables left in."""
    text = (ROOT / "Makefile").read_text()
    body = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in body.splitlines()[1:] if line.startswith("\t")]


def test_the_makefile_demo_is_the_steps_tested_here():
    commands = demo_commands()
    assert any(re.search(r"modalzoo train clip_vit_tiny run_dir=\$\(DEMO_RUN\)", c) for c in commands)
    assert any("modalzoo eval $(DEMO_RUN)" in c for c in commands)
    assert any("modalzoo export $(DEMO_RUN) --format hf --out $(DEMO_RUN)/export" in c for c in commands)
    assert any("examples/pipeline_zero_shot.py $(DEMO_RUN)/export data/digits" in c for c in commands)


@pytest.mark.slow
def test_demo_steps_end_to_end(digits, tmp_path):
    run_dir = tmp_path / "demo"
    trained = run_cli("train", "clip_vit_tiny", f"run_dir={run_dir}", f"data.path={digits}", *SHRINK)
    assert trained.returncode == 0, trained.stderr[-3000:]
    evaluated = run_cli("eval", str(run_dir), "--batches", "2")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "zero_shot_chance" in evaluated.stdout and "confusion_matrix_png" in evaluated.stdout
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["zero_shot_chance"] == pytest.approx(0.1)
    exported = run_cli("export", str(run_dir), "--format", "hf", "--out", str(run_dir / "export"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    shown = subprocess.run([sys.executable, str(ROOT / "examples" / "pipeline_zero_shot.py"), str(run_dir / "export"),
                            str(digits), "--limit", "12", "--show", "3"], capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr[-3000:]
    lines = [line for line in shown.stdout.splitlines() if line.strip()]
    assert len([line for line in lines if line.startswith("  image ")]) == 3
    found = re.search(r"on 12 held-out images: top-1 ([\d.]+)% \(chance 10\.0%\)", lines[-1])
    assert found and 0.0 <= float(found.group(1)) <= 100.0, lines[-1]
