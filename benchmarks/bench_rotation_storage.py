"""Store one upright image per rotation sample, or its four rotations? Bytes and loader decode cost.

``.venv/bin/python benchmarks/bench_rotation_storage.py [--count 120] [--repeats 5]``

For an ImageNet-like tree (``common.write_tree``), the rotation recipe's upright 256-px crops are encoded
(q95) once, and, as the alternative, rotated four ways and each rotation encoded. Per training sample
(one image in its four rotations) it prints the stored bytes and the time to get the four rotations
as a uint8 batch: decode one JPEG and rotate it with ``torch.rot90`` (what the loader and task do), or
decode four JPEGs. Both sides run interleaved in the same process; the ratios are four-stored / one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import torch

from mtssl.contract import decode_jpeg, encode_jpeg
from pipelines.imageio import load_rgb
from pipelines.recipes.rotation import RotationRecipeConfig, make_sample
from pipelines.units.images import sample_rng


def stored(paths: list[Path], cfg: RotationRecipeConfig) -> tuple[list[bytes], list[list[bytes]]]:
    one, four = [], []
    for path in paths:
        rgb = load_rgb(path, draft_side=cfg.size).rgb
        one.append(make_sample(rgb, sample_rng(0, "rotation", path.name), cfg).fields["rgb.jpg"])
        upright = decode_jpeg(one[-1])
        four.append([encode_jpeg(np.ascontiguousarray(np.rot90(upright, k)), cfg.jpeg_quality) for k in range(4)])
    return one, four


def time_one(one: list[bytes]) -> float:
    start = time.perf_counter()
    for data in one:
        x = torch.from_numpy(np.ascontiguousarray(decode_jpeg(data))).permute(2, 0, 1)[None]
        torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    return (time.perf_counter() - start) / len(one)


def time_four(four: list[list[bytes]]) -> float:
    start = time.perf_counter()
    for rotations in four:
        torch.stack([torch.from_numpy(np.ascontiguousarray(decode_jpeg(data))).permute(2, 0, 1) for data in rotations])
    return (time.perf_counter() - start) / len(four)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    common.print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        tree = common.write_tree(Path(tmp), "imagenet", args.count)
        one, four = stored(common.image_paths(tree.root), RotationRecipeConfig())
    bytes_one = statistics.mean(map(len, one))
    bytes_four = statistics.mean(sum(map(len, r)) for r in four)
    t_one, t_four = [], []
    for _ in range(args.repeats):  # interleaved: both sides see the same machine state
        t_one.append(time_one(one))
        t_four.append(time_four(four))
    ms_one, ms_four = statistics.median(t_one) * 1e3, statistics.median(t_four) * 1e3
    print(f"{len(one)} samples (256-px q95 crops of an ImageNet-like tree), one thread")
    print(f"bytes per sample: one image {bytes_one / 1e3:.1f} KB, four rotations {bytes_four / 1e3:.1f} KB: "
          f"{bytes_four / bytes_one:.2f}x")  # fmt: skip
    print(f"four rotations as a batch: decode one + rot90 {ms_one:.2f} ms, decode four {ms_four:.2f} ms: "
          f"{ms_four / ms_one:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
