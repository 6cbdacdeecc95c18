"""Streaming shard sets into batches: one webdataset pipeline per task, zipped into one bundle per step.

In every DataLoader worker, per task::

    ResampledShards (shards drawn with replacement, seeded) -> tar members of the fields the task reads
    -> shuffle buffer (raw bytes) -> decoded with the contract's decoders (never pickle) straight into
    the batch's tensors, (motion) through one random square crop of every image field
    (``mtssl.data.batching``: uint8 tensors in the layout of ``mtssl.inputs.batch_from_samples``)

and the worker yields ``{task: batch}``, one training step's mini-batch of every task the rank trains. The
loader does no other CPU work: input-mode transforms, colour dropping, soft encoding and the rest run on
the device (``task.prepare``). On CUDA the batches come back in pinned memory and are copied with
``non_blocking=True`` (:func:`to_device`).

Why resampled, infinite streams. Every rank and worker draws its own shards, seeded from (seed, task,
rank, worker, segment start), so streams differ across ranks and workers, and no rank can run dry before
another: the loop, not the data, decides how many steps a run takes (what webdataset's ``with_epoch``
would otherwise align). We build the pipeline from webdataset's parts rather than ``wds.WebDataset``
because its seeds come from the ``RANK`` variable and per-object epoch counters, which would tie the
stream to the process rather than to the run's step.

Segments and resume. A stream is restarted at every segment start (the run's first step, then every
multiple of ``segment_steps``, the checkpoint interval), and a segment's stream is a pure function of
(seed, task, rank, worker, start step, worker count). So a run resumed from a checkpoint taken at a
segment start sees exactly the batches the uninterrupted run saw, and a run resumed anywhere else
starts a fresh stream rather than replaying one. Restarting costs a refill of the shuffle buffers and
throws away the batches the workers had prefetched (``prefetch_factor`` per worker), once per segment.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mtssl.contract import field_names_for, tar_members_of
from mtssl.contract.locations import cached_copy, is_url, read_bytes, read_local
from mtssl.data.batching import BatchDecoder, BatchRing
from mtssl.data.device_decode import RAW_SUFFIXES, Decoder, decode_on_device
from mtssl.data.health import HEALTH, ShardHealth

Bundle = dict[str, dict[str, torch.Tensor]]


def fields_for(keys: Sequence[str]) -> tuple[str, ...]:
    """Contract fields to read and decode for the batch keys a task reads (``net.keys(task)``): the field
    table's (``mtssl.contract.field_names_for``; KeyError for a key no field holds)."""
    return field_names_for(keys)


@dataclass(frozen=True)
class TaskSpec:
    """One task's stream: its shards, the fields it decodes, its batch size and crop."""

    task: str
    urls: tuple[str, ...]
    fields: tuple[str, ...]
    batch_size: int
    crop: int | None = None  # side of a random square crop of every image field (motion frames)
    buffer: int = 500  # shuffle buffer, in samples (raw bytes of the selected fields)
    md5: tuple[str, ...] = ()  # the manifest's md5 of each url: checked as each shard is read (empty: no check)
    keep_jpeg: bool = False  # hand JPEG fields over as bytes, decoded on the device (mtssl.data.device_decode)
    cache_dir: str | None = None  # local copies of shards read from a bucket (mtssl.contract.locations.cached_copy)
    max_bad_fraction: float = 0.01  # stop when more of these shards are damaged (mtssl.data.health.verdict)


HEALTH_KEY = "__health__"  # the bundle entry that carries a worker's ShardHealth snapshot
RING_KEY = "__ring__"  # the bundle entry that names the worker's ring slots its batches occupy


def batches_of(bundle: Mapping[str, Any]) -> Bundle:
    """A bundle's task batches, without its bookkeeping entries (shard health, ring slots)."""
    return {task: batch for task, batch in bundle.items() if task not in (HEALTH_KEY, RING_KEY)}


def stream_seed(seed: int, task: str, rank: int, worker: int, start_step: int) -> int:
    """The seed of one task's stream in one worker of one rank, for the segment starting at ``start_step``.

    The task enters by a stable hash of its name, not its place in the registry: adding a task leaves every
    other task's data as it was.
    """
    entropy = [seed, zlib.crc32(task.encode()), rank, worker, start_step]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _selector(fields: Sequence[str]):
    wanted = set(fields)

    def select(fname: str) -> bool:
        return fname.rsplit("/", 1)[-1].partition(".")[2] in wanted

    return select


def tar_members(path: str, wanted: set[str]) -> Iterator[tuple[str, str, bytes]]:
    """(key, field, bytes) of the regular members of a local POSIX tar whose field is wanted.

    A lean reader for the shards ``TarWriter`` writes (ustar headers, pax records for long names): the
    shard is read whole (one read; shards are a few MB) and parsed in memory, members of other fields
    are passed over without being copied. Python's ``tarfile`` in stream mode, which webdataset uses,
    costs about 35 us per member here against 5. A header that is not ustar, fails its checksum or
    names its member in bytes that are not UTF-8 raises ValueError naming the shard and the offset.
    """
    yield from tar_members_of(read_local(path)[0], path, wanted)


def shard_members(
    url: str, wanted: set[str], md5: str | None, cache_dir: str | None = None
) -> Iterator[tuple[str, str, bytes]]:
    """The members of a shard; with ``md5``, the shard's bytes are checked first (ValueError when they
    are not the ones the manifest recorded): a damaged payload never reaches the decoders. A shard is
    hashed on its first read in this process and again only when its size, time or inode change, so
    the check costs one md5 per shard per worker (about a tenth of the decode time of its samples),
    not one per read. An object in a bucket is read whole (retried with backoff, LocationError after)
    and hashed on every read, having no inode to trust; with ``cache_dir`` it is read from its local copy
    instead, which is trusted as any local shard is."""
    path = str(cached_copy(url, cache_dir, md5 or "")) if is_url(url) and cache_dir is not None else url
    if is_url(path):
        data = read_bytes(path)
        identity: tuple | None = None
    else:
        data, stat = read_local(path)  # only a regular file: a FIFO in its place is an error, not a hang
        identity = (path, stat.st_ino, stat.st_size, stat.st_mtime_ns, md5)
    if md5 is None:
        yield from tar_members_of(data, url, wanted)
        return
    if identity is None or identity not in _VERIFIED:
        if hashlib.md5(data).hexdigest() != md5:
            if path != url:  # a damaged cached copy: removed, so the next read fetches the object again
                Path(path).unlink(missing_ok=True)
            raise ValueError(f"{url}: md5 differs from the manifest's (damaged or replaced shard)")
        if identity is not None:
            _VERIFIED.add(identity)
    yield from tar_members_of(data, url, wanted, checked=True)


_VERIFIED: set[tuple] = set()  # shards whose bytes matched their md5 in this process (see shard_members)


def _local_tar_samples(
    src: Iterator[dict[str, Any]],
    fields: Sequence[str],
    md5: Mapping[str, str] | None = None,
    task: str = "",
    health: ShardHealth = HEALTH,
    cache_dir: str | None = None,
    max_bad_fraction: float | None = None,
    shards: int = 0,
) -> Iterator[dict[str, Any]]:
    """webdataset stage: shard URLs (local paths) -> samples ``{__key__, __url__, field: bytes}``.

    With ``md5`` (url -> the manifest's md5) each shard is checked as it is read; a shard that fails the
    check, or whose tar headers are damaged, gives no sample (or none after the damage), is counted in
    ``health`` and warned about once. With ``max_bad_fraction`` (the training streams, which resample
    forever) the reader stops the run once too many of its ``shards`` are damaged (``ShardHealth.check``)."""
    wanted = set(fields)
    for shard in src:
        sample: dict[str, Any] = {}
        url, given, ok = shard["url"], 0, True
        try:
            for key, field, data in shard_members(url, wanted, (md5 or {}).get(url), cache_dir):
                if sample and sample["__key__"] != key:
                    yield sample
                    given += 1
                    sample = {}
                sample.setdefault("__key__", key)
                sample["__url__"] = shard["url"]
                sample[field] = data
        except (ValueError, OSError) as exc:  # damaged bytes or header, or a read that kept failing
            if url not in health.last_bad.values():
                warnings.warn(f"skipping the rest of a shard: {exc}", stacklevel=2)
            ok, sample = False, {}  # the sample being read when the damage was found is dropped with it
        if sample:
            yield sample
            given += 1
        health.record(task, url, ok=ok, samples=given)
        if max_bad_fraction is not None and shards:
            health.check(task, shards, max_bad_fraction)


def tar_stage(
    urls: Sequence[str],
    fields: Sequence[str],
    md5: Sequence[str] = (),
    task: str = "",
    health: ShardHealth = HEALTH,
    cache_dir: str | None = None,
    max_bad_fraction: float | None = None,
) -> Any:
    """The lean reader when every URL is a local file or an fsspec URL (checking each shard's md5 when
    given; see ``_local_tar_samples`` for ``max_bad_fraction``); webdataset's general one otherwise
    (``pipe:`` URLs and the like)."""
    if all(is_url(url) or os.path.isfile(url) for url in urls):
        expected = dict(zip(urls, md5, strict=True)) if md5 else None
        stage = wds.pipelinefilter(_local_tar_samples)
        return stage(fields, expected, task, health, cache_dir, max_bad_fraction, len(set(urls)))
    return wds.tarfile_to_samples(select_files=_selector(fields))


def task_pipeline(
    spec: TaskSpec, seed: int, health: ShardHealth = HEALTH, ring: BatchRing | None = None
) -> wds.DataPipeline:
    """The webdataset pipeline of one task in one worker (see the module docstring); its batches fill the
    slots of ``ring`` when given."""
    shard_seed, shuffle_seed, crop_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
    stages: list[Any] = [
        wds.ResampledShards(list(spec.urls), seed=shard_seed, worker_seed=lambda: 0, deterministic=True),
        tar_stage(spec.urls, spec.fields, spec.md5, spec.task, health, spec.cache_dir, spec.max_bad_fraction),
        wds.shuffle(spec.buffer, initial=min(spec.buffer, 100), seed=shuffle_seed),
        BatchDecoder(
            spec.fields, spec.batch_size, spec.crop, np.random.default_rng(crop_seed), ring, keep_jpeg=spec.keep_jpeg
        ),
    ]
    return wds.DataPipeline(*stages)


def fixed_batches(spec: TaskSpec, count: int) -> list[dict[str, torch.Tensor]]:
    """The first ``count`` batches of ``spec``'s shards read in order, unshuffled, centre-cropped: the same
    validation batches at every evaluation of a run (fewer when the shards hold fewer samples; the last one
    partial, so held-out shards smaller than a batch still validate)."""
    stages: list[Any] = [
        wds.SimpleShardList(list(spec.urls)),
        tar_stage(spec.urls, spec.fields, spec.md5, spec.task, cache_dir=spec.cache_dir),
        BatchDecoder(spec.fields, spec.batch_size, spec.crop, rng=None, partial=True),
    ]
    return list(itertools.islice(wds.DataPipeline(*stages), count))


class StepStream(IterableDataset):
    """Yields ``{task: batch}`` forever; each ``iter()`` starts the next segment's streams.

    Args:
        specs: the tasks this rank trains.
        seed: the run's seed.
        rank: the global rank (streams differ across ranks).
        start_step: the step the run (re)starts at: the first segment starts here.
        segment_steps: the checkpoint interval; later segments start at its multiples.
    """

    def __init__(self, specs: Sequence[TaskSpec], seed: int, rank: int, start_step: int, segment_steps: int) -> None:
        super().__init__()
        self.specs = tuple(specs)
        self.seed, self.rank = seed, rank
        self.start_step, self.segment_steps = start_step, max(segment_steps, 1)
        self.iterations = 0  # segments begun by this copy (each DataLoader worker holds its own copy)
        self.health = ShardHealth()  # this copy's shard reads (one per worker, kept across segments)
        self.ring_flags: torch.Tensor | None = None  # shared by the loader's workers (share_ring)
        self._views: dict[tuple[int, int, int], list[torch.UntypedStorage]] = {}  # see release

    def segment_start(self, index: int) -> int:
        """Start step of this run's ``index``-th segment."""
        if index == 0:
            return self.start_step
        return (self.start_step // self.segment_steps + index) * self.segment_steps

    def share_ring(self, workers: int, slots: int) -> None:
        """Before the loader's workers start: the shared flags of every worker's batch ring (see
        ``mtssl.data.batching.BatchRing``), ``slots`` batches per worker and task."""
        self.ring_flags = torch.zeros((workers, len(self.specs), slots), dtype=torch.int64).share_memory_()

    def __iter__(self) -> Iterator[Bundle]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        start = self.segment_start(self.iterations)
        self.iterations += 1
        rings = self._rings(worker) if info is not None else {}
        streams = {}
        for s in self.specs:
            seed = stream_seed(self.seed, s.task, self.rank, worker, start)
            ring = rings[s.task][1] if s.task in rings else None
            streams[s.task] = iter(task_pipeline(s, seed, self.health, ring))
        while True:
            bundle: dict[str, Any] = {task: next(stream) for task, stream in streams.items()}
            bundle[HEALTH_KEY] = {"worker": worker, **self.health.snapshot()}
            if rings:
                bundle[RING_KEY] = {task: (worker, i, ring.slot, ring.generation) for task, (i, ring) in rings.items()}
            yield bundle

    def _rings(self, worker: int) -> dict[str, tuple[int, BatchRing]]:
        """This segment's rings, one per task: new buffers every segment, so a batch kept from an earlier
        segment is never written again."""
        if self.ring_flags is None:
            return {}
        flags = self.ring_flags[worker]
        flags.zero_()  # the earlier segment's batches still held are no longer in any ring
        return {s.task: (i, BatchRing(flags[i], generation=self.iterations)) for i, s in enumerate(self.specs)}

    def release(self, bundle: Mapping[str, Any]) -> None:
        """Give a bundle's ring slots back to their worker: call once its batches are copied (``to_device``).

        This process keeps its view of each slot's shared memory (torch maps a shared storage it still
        holds only once): without it, every batch would be mapped afresh and fault its pages in again
        here, about 1 ms per 8 MB."""
        for task, (worker, index, slot, generation) in bundle.get(RING_KEY, {}).items():
            if slot < 0 or self.ring_flags is None:
                continue
            self._views[(worker, index, slot)] = [t.untyped_storage() for t in bundle[task].values()]
            if int(self.ring_flags[worker, index, slot]) == generation:
                self.ring_flags[worker, index, slot] = 0


def init_worker(_: int) -> None:
    """One thread per loader worker: OpenCV's and torch's own threads would oversubscribe the cores."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def make_loader(stream: StepStream, workers: int, pin_memory: bool, prefetch: int = 2) -> DataLoader:
    """A DataLoader over already-batched bundles; persistent workers, so a new segment reuses them. Each
    worker fills a ring of ``prefetch + 3`` shared batches per task (prefetched, being pinned, held by
    the step, and one spare), which the consumer gives back with ``stream.release(bundle)``."""
    if workers > 0:
        # Shared tensors travel by name, not by file descriptor: torch sends each descriptor over a socket
        # to its own thread in the worker, 0.3 ms of worker time and 0.7 ms of wall time per tensor, 12% of
        # a colour batch's time here (against 0.05 by name; torch's shm manager removes what a killed
        # process leaves behind). Set before the workers start, for them and for this process.
        torch.multiprocessing.set_sharing_strategy("file_system")
        stream.share_ring(workers, prefetch + 3)
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch if workers > 0 else None,
        worker_init_fn=init_worker if workers > 0 else None,
    )


def to_device(bundle: Bundle, device: torch.device, decoder: Decoder | None = None) -> Bundle:
    """Copy a bundle to ``device`` (asynchronously from pinned memory on CUDA), decoding there the JPEGs
    handed over as bytes (``TaskSpec.keep_jpeg``; ``decoder``: see ``decode_on_device``). A bundle whose
    batches sit in a worker's ring is always copied, on the CPU too, so that its slots can be released
    right after."""
    non_blocking, copy = device.type == "cuda", RING_KEY in bundle
    out = {}
    for task, batch in batches_of(bundle).items():
        moved = {
            key: value if key.endswith(RAW_SUFFIXES) else value.to(device, non_blocking=non_blocking, copy=copy)
            for key, value in batch.items()
        }  # JPEG bytes stay on the host, where the decoders read them (they are never in a ring)
        out[task] = decode_on_device(moved, device, decoder)
    return out
