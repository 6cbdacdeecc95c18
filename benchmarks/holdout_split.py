"""Split a labelled folder as ``mtssl-eval probe --images DIR --split S --seed N`` splits it, as two link trees.

Pretrain on ``OUT/train`` (as unlabelled images) and probe with ``--images DIR --split S --seed N`` (or
``--train OUT/train --val OUT/val``): every validation image is then a photo the trunk never saw.

    .venv/bin/python benchmarks/holdout_split.py ../shared/data/flowers5 /work/exp/flowers5-split
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mtssl.eval.folders import list_labelled, split_labelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="labelled folder: one sub-folder per class")
    parser.add_argument("out", type=Path)
    parser.add_argument("--split", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = list_labelled(args.images)
    for name, part in zip(("train", "val"), split_labelled(data, args.split, args.seed), strict=True):
        for path, label in zip(part.paths, part.labels, strict=True):
            link = args.out / name / data.classes[label] / path.relative_to(args.images / data.classes[label])
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(path.resolve())
        print(f"{name}: {len(part)} images -> {args.out / name}")


if __name__ == "__main__":
    main()
