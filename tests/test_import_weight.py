"""Building a model imports only what a model needs: no plotting, image decoding, timm/torchvision, shard
reading or trainer (each is imported by the command that uses it). Run in a fresh interpreter, so
nothing another test imported counts."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("matplotlib", "PIL", "timm", "torchvision", "webdataset", "modalzoo.training.trainer",
         "modalzoo.evaluation.run")


def test_build_model_imports_no_heavy_module():
    code = ("import json, sys, modalzoo; modalzoo.build_model(modalzoo.load_recipe('bert_mlm_tiny')); "
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
