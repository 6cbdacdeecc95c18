"""Writes that fail (full disk, permissions): one clear line, nothing half-written, and a rerun completes."""

from __future__ import annotations

import errno

import pytest
import torch


def test_a_checkpoint_that_cannot_be_written_is_one_clear_error_and_leaves_no_temporary(tmp_path, monkeypatch):
    from mtssl.train import checkpoint
    from mtssl.train.errors import SaveError

    real_open = open

    class FullFile:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(bytes(data)[:7])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    target = tmp_path / "ckpt-00000004.pt"
    monkeypatch.setattr("builtins.open", lambda p, mode="r", *a, **k: FullFile(real_open(p, mode, *a, **k)))
    with pytest.raises(SaveError, match=r"could not write .*ckpt-00000004\.pt: no space left on device.*--resume"):
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


def test_a_build_onto_a_really_full_disk_names_the_disk_error_and_the_path(sample_images, tiny_disk):
    """A real 1 MiB filesystem, not a patched writer: the sample's colour set (~2 MB) does not fit."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tiny_disk / "color"
    args = ["build", "color", "--images", str(sample_images), "--out", str(out), "--workers", "0"]
    result = CliRunner().invoke(app, [*args, "--samples-per-shard", "8"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    assert "No space left on device" in text and str(out) in text and "Traceback" not in text
