"""Classify held-out digits with transformers' own `zero-shot-image-classification` pipeline, from an
exported folder alone (the last step of `make demo`).

    modalzoo export runs/demo --format hf --out runs/demo/export
    python examples/pipeline_zero_shot.py runs/demo/export data/digits [--show 8] [--limit 360]

Nothing of modalzoo is imported: the folder is loaded with `transformers.pipeline`, the images are the
digits test shards read with the standard library's tarfile, and the candidate labels and prompt template
come from the data set's `classes.json`. Prints a few predictions, then top-1 over the images next to
chance.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

from PIL import Image
from transformers import pipeline


def test_images(data_dir: Path, limit: int):
    """(PIL image, class id) pairs of the test split, in shard order."""
    count = 0
    for shard in sorted((data_dir / "test").glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {}
            for member in tar:
                key, _, ext = member.name.partition(".")
                members.setdefault(key, {})[ext] = tar.extractfile(member).read()
                sample = members[key]
                if "png" in sample and "cls" in sample:
                    yield Image.open(io.BytesIO(sample.pop("png"))).convert("RGB"), int(sample.pop("cls"))
                    del members[key]
                    count += 1
                    if count >= limit:
                        return


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export_dir", type=Path)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--show", type=int, default=8, help="predictions to print (default 8)")
    p.add_argument("--limit", type=int, default=10_000, help="images to classify (default: all)")
    args = p.parse_args(argv)

    info = json.loads((args.data_dir / "classes.json").read_text())
    labels, template = [str(c) for c in info["classes"]], info["templates"][0]
    classify = pipeline("zero-shot-image-classification", model=str(args.export_dir), device="cpu")
    correct = total = 0
    for image, class_id in test_images(args.data_dir, args.limit):
        best = classify(image, candidate_labels=labels, hypothesis_template=template)[0]
        hit = best["label"] == labels[class_id]
        correct, total = correct + hit, total + 1
        if total <= args.show:
            print(f"  image {total:>3}: true {labels[class_id]!r:>8}  predicted {best['label']!r:>8} "
                  f"(p={best['score']:.2f}) {'ok' if hit else 'WRONG'}")
    accuracy = correct / max(total, 1)
    print(f"transformers pipeline('zero-shot-image-classification') on {total} held-out images: top-1 "
          f"{accuracy:.1%} (chance {1 / len(labels):.1%}); template {template!r}")
    return accuracy


if __name__ == "__main__":
    main()
