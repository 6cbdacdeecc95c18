"""``mtssl-eval probe``: feature-extraction rate, and a cached re-run against the cold run, in one process.

Runs the same probe twice with an empty feature cache: the first extracts the features of the trunk and of
every random-init baseline (and fits the classifiers), the second reads them back from the cache and only
fits the classifiers. Prints the extraction rate (images/s), both wall times and their ratio.

    .venv/bin/python benchmarks/bench_probe.py --run RUN --images ../shared/data/flowers5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mtssl.eval.probe import ProbeOptions, run_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--size", type=int, default=None, help="default: the probe's (224, no upscaling)")
    parser.add_argument("--random-seeds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        options = ProbeOptions(
            trunk=args.run / "trunk.pt", images=args.images, size=args.size, random_seeds=args.random_seeds,
            cache_dir=Path(cache), device="cpu", quiet=True,
        )  # fmt: skip
        times, results = [], []
        for _ in range(2):
            tic = time.perf_counter()
            results.append(run_probe(options))
            times.append(time.perf_counter() - tic)
    cold, warm = results
    assert not cold["timing"]["features_cached"] and warm["timing"]["features_cached"]
    images = cold["n_train"] + cold["n_val"]
    print(f"{images} images at {cold['size']} px, trunk {args.run}, {args.random_seeds} random-init baselines")
    print(f"extraction of the trained trunk: {cold['timing']['extract_images_per_s']} images/s")
    print(f"cold probe {times[0]:.1f} s, cached re-run {times[1]:.1f} s: the re-run takes {times[1] / times[0]:.2f}x")
    print(f"same scores when cached: {cold['sources'] == warm['sources']}")


if __name__ == "__main__":
    main()
