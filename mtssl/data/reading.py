"""Reading a shard set's samples in Python, outside training: ``mtssl.read_samples``.

For looking at a set, writing an evaluation, or feeding another framework: one decoded sample at a time,
in the set's order, each field decoded by the shard contract (images as numpy arrays, colour as RGB;
``json`` as a dict). Every shard's md5 is checked against the manifest before its samples are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtssl.contract.fields import DECODERS
from mtssl.data.shardsets import ShardSet, load_set
from mtssl.data.stream import shard_members


def read_samples(shard_set: ShardSet | str | Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The decoded samples of a shard set (a folder, a bucket URL, or a loaded ``ShardSet``): dicts of
    ``__key__`` and one entry per stored field (``rgb.jpg``, ``l.jpg``, ``mask.png``, ``json``...)."""
    sset = shard_set if isinstance(shard_set, ShardSet) else load_set(shard_set)
    md5 = sset.md5_by_url()
    count = 0
    for url in sset.urls:
        sample: dict[str, Any] = {}
        for key, field, data in shard_members(url, set(DECODERS), md5.get(url)):
            if sample and sample["__key__"] != key:
                yield sample
                count += 1
                if limit is not None and count >= limit:
                    return
                sample = {}
            sample.setdefault("__key__", key)
            sample[field] = DECODERS[field](data)
        if sample:
            yield sample
            count += 1
            if limit is not None and count >= limit:
                return
