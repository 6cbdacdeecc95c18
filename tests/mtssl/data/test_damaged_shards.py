"""Damaged sample bytes never reach the loss: the loader checks each shard's md5 as it reads it, skips
and counts a damaged one, and a run that sees too many stops with an error naming the shard."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mtssl.train.damage import DamagedData, DamageTracker
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.loop import train

from ..shardkit import flip_middle_bytes


def damaged_copy(shard_root: Path, tmp_path: Path, task: str = "color") -> tuple[Path, Path]:
    """The shard sets copied, with 16 bytes flipped in the middle of the largest payload (a JPEG) of
    ``task``'s first shard: the tar headers stay intact, the sample still decodes, wrongly."""
    root = tmp_path / "shards"
    shutil.copytree(shard_root, root)
    shard = sorted((root / task).glob("*.tar"))[0]
    flip_middle_bytes(shard)
    return root, shard


def test_a_damaged_shard_is_skipped_and_counted_in_the_log(shard_root, tmp_path, tiny_config):
    root, shard = damaged_copy(shard_root, tmp_path)
    cfg = tiny_config(shards=str(root), steps=6, max_bad_fraction=1.0)
    with pytest.warns(UserWarning, match=f"{shard.name}: md5 differs"):
        train(cfg)
    records = [r for r in read_log(Path(cfg.out) / LOG_FILE) if "loss" in r]
    assert records[-1]["bad_shards"]["color"] >= 1 and set(records[-1]["bad_shards"]) == {"color"}


def test_too_many_damaged_shards_stop_the_run_naming_the_shard(shard_root, tmp_path, tiny_config):
    root, shard = damaged_copy(shard_root, tmp_path)
    cfg = tiny_config(shards=str(root), steps=6, max_bad_fraction=0.0)
    with pytest.warns(UserWarning), pytest.raises(DamagedData, match=rf"color: .*damaged \(last: .*{shard.name}\)"):
        train(cfg)


def test_without_the_check_damaged_bytes_go_unnoticed(shard_root, tmp_path, tiny_config):
    """What the check is for: the flipped bytes land in a JPEG or ab.npy payload that still decodes."""
    import warnings

    root, _ = damaged_copy(shard_root, tmp_path)
    cfg = tiny_config(shards=str(root), steps=2, check_shards=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg)
    assert not [w for w in caught if "md5" in str(w.message)]
    assert all("bad_shards" not in r for r in read_log(Path(cfg.out) / LOG_FILE))


def test_the_tracker_judges_distinct_shards_over_every_worker():
    tracker = DamageTracker(max_bad_fraction=0.1, shards={"color": 20})
    tracker.update(
        {"worker": 0, "good": {"color": 3}, "bad": {"color": 1}, "last_bad": {}, "damaged": {"color": ["a.tar"]}}
    )
    tracker.update(
        {
            "worker": 1,
            "good": {"color": 5},
            "bad": {"color": 2},
            "last_bad": {},
            "damaged": {"color": ["a.tar", "b.tar"]},
        }
    )
    tracker.check()  # 2 of 20 shards: not more than a tenth
    assert tracker.counts() == {"color": (11, 3)} and tracker.damaged() == {"color": 3}
    tracker.update(
        {
            "worker": 0,
            "good": {"color": 3},
            "bad": {"color": 2},
            "last_bad": {},
            "damaged": {"color": ["a.tar", "c.tar"]},
        }
    )
    with pytest.raises(DamagedData, match="3 of its 20 shards"):
        tracker.check()
