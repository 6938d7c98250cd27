"""Zero-shot classification of the digits test split with a CLIP export, using only transformers.

    modalzoo train clip_vit_tiny run_dir=runs/clip_tiny && modalzoo eval runs/clip_tiny
    modalzoo export runs/clip_tiny --format hf --out exports/clip_tiny
    python examples/zero_shot_with_transformers.py exports/clip_tiny data/digits

Reads the test shards with webdataset, preprocesses with the export's AutoProcessor, embeds with
CLIPModel, averages each class's prompt templates as `modalzoo eval` does, and prints top-1: the figure
should equal the run's eval.json ``zero_shot_top1``.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import torch
import webdataset as wds
from PIL import Image
from transformers import AutoProcessor, CLIPModel


def main(export_dir: str, data_dir: str) -> float:
    processor = AutoProcessor.from_pretrained(export_dir)
    model = CLIPModel.from_pretrained(export_dir).eval()
    info = json.loads((Path(data_dir) / "classes.json").read_text())
    with torch.no_grad():
        classes = []
        for name in info["classes"]:      # get_*_features return the projection in .pooler_output (v5)
            text = processor(text=[t.format(name) for t in info["templates"]], return_tensors="pt",
                             padding="max_length", truncation=True)
            classes.append(torch.nn.functional.normalize(model.get_text_features(**text).pooler_output.mean(0), dim=-1))
        classes = torch.stack(classes)
        shards = sorted(str(p) for p in (Path(data_dir) / "test").glob("*.tar"))
        correct = total = 0
        for sample in wds.WebDataset(shards, shardshuffle=False):
            image = Image.open(io.BytesIO(sample["png"]))
            features = model.get_image_features(**processor(images=image, return_tensors="pt")).pooler_output
            correct += int((features @ classes.T).argmax(-1).item() == int(sample["cls"]))
            total += 1
    print(f"zero-shot top-1 with transformers.CLIPModel: {correct / total:.4f} on {total} images")
    return correct / total


if __name__ == "__main__":
    main(*sys.argv[1:3])
