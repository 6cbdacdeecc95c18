"""Writes that fail (full disk, permissions): one clear line, nothing half-written, and a rerun completes."""

from __future__ import annotations

import errno

import pytest
import torch


def test_a_checkpoint_that_cannot_be_written_is_one_clear_error_and_leaves_no_temporary(tmp_path, monkeypatch):
    from mtssl.train import checkpoint
    from mtssl.train.errors import SaveError

    def full_disk(obj, fh):
        fh.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    target = tmp_path / "ckpt-00000004.pt"
    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(SaveError, match=r"could not write .*ckpt-00000004\.pt .*--resume"):
        checkpoint.save_atomic({"x": torch.zeros(2)}, target)
    assert list(tmp_path.iterdir()) == []


def test_a_build_on_a_full_disk_says_so_in_one_line_and_the_rerun_completes(sample_images, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipelines import shardjob
    from pipelines.cli import app

    real = shardjob.write_tar
    calls = {"n": 0}

    def fills_up(path, samples):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, samples)

    monkeypatch.setattr(shardjob, "write_tar", fills_up)
    out = tmp_path / "color"
    args = ["build", "color", "--images", str(sample_images), "--out", str(out), "--workers", "0"]
    result = CliRunner().invoke(app, [*args, "--samples-per-shard", "8"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())  # the console wraps long lines
    assert "error: No space left on device" in text and "rerun the same command" in text
    assert "Traceback" not in text
    monkeypatch.setattr(shardjob, "write_tar", real)
    again = CliRunner().invoke(app, [*args, "--samples-per-shard", "8"])
    assert again.exit_code == 0, again.output
    assert "already done" in again.output
