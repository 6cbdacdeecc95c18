"""The mtssl-data commands as a user runs them: info, verify (with corruption), preview, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def color_set(sample_images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "color"
    args = ["build", "color", "--images", str(sample_images), "--out", str(out), "--workers", "0"]
    result = runner.invoke(app, [*args, "--samples-per-shard", "10", "--limit", "30"])
    assert result.exit_code == 0, text(result)
    return out


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("build", "sample", "info", "verify", "preview", "score-motion"):
        assert command in text(result)
    assert "--images" in text(runner.invoke(app, ["build", "exemplar", "--help"]))


def test_info_reports_counts_sizes_and_rejects(color_set):
    result = runner.invoke(app, ["info", str(color_set)])
    assert result.exit_code == 0, text(result)
    assert "30 in 3 shards" in text(result) and "bytes per sample" in text(result)


def test_verify_passes_then_catches_a_flipped_byte_and_a_missing_shard(color_set, tmp_path):
    assert runner.invoke(app, ["verify", str(color_set)]).exit_code == 0
    broken = tmp_path / "broken"
    shutil.copytree(color_set, broken)
    tar = broken / "color-000001.tar"
    data = bytearray(tar.read_bytes())
    data[5000] ^= 0xFF
    tar.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(broken)])
    assert result.exit_code == 1 and "md5 mismatch" in text(result)
    (broken / "color-000002.tar").unlink()
    result = runner.invoke(app, ["verify", str(broken)])
    assert result.exit_code == 1 and "missing" in text(result)


def test_verify_decodes_every_sample(color_set, tmp_path):
    """A shard whose checksum was updated after a field was damaged still fails on decode."""
    from mtssl.contract import md5_file

    broken = tmp_path / "decode"
    shutil.copytree(color_set, broken)
    tar = broken / "color-000000.tar"
    data = tar.read_bytes()
    start = data.index(b"\x89PNG")  # the first bins.png: break its signature
    tar.write_bytes(data[:start] + b"XXXX" + data[start + 4 :])
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["shardlist"][0]["md5sum"] = md5_file(tar)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["verify", str(broken)])
    assert result.exit_code == 1 and "PNG" in text(result)


def test_preview_writes_a_contact_sheet(color_set, tmp_path):
    out = tmp_path / "sheet.png"
    result = runner.invoke(app, ["preview", str(color_set), "--out", str(out), "--count", "3"])
    assert result.exit_code == 0, text(result)
    sheet = cv2.imread(str(out))
    assert sheet.shape[0] > 3 * 256 and sheet.shape[1] >= 3 * 256  # 3 rows of L | bins | ab panels


def test_commands_on_a_folder_without_manifest_fail_clearly(tmp_path):
    for command in ("info", "verify", "preview"):
        result = runner.invoke(app, [command, str(tmp_path)])
        assert result.exit_code == 2 and "no manifest.json" in text(result)
        assert result.stderr.startswith("error: ") and not result.stdout


def test_build_into_a_folder_of_another_build_fails_clearly(color_set, sample_images):
    args = ["build", "color", "--images", str(sample_images), "--out", str(color_set), "--workers", "0"]
    result = runner.invoke(app, [*args, "--samples-per-shard", "10", "--limit", "30", "--seed", "5"])
    assert result.exit_code == 2 and "another configuration" in text(result)


@pytest.mark.slow
def test_sample_writes_class_folders(tmp_path):
    result = runner.invoke(app, ["sample", "--out", str(tmp_path), "--per-class", "2"])
    assert result.exit_code == 0, text(result)
    folders = [p for p in (tmp_path / "images").iterdir() if p.is_dir()]
    assert len(folders) == 15 and all(len(list(f.glob("*.jpg"))) == 2 for f in folders)


@pytest.mark.slow
@pytest.mark.parametrize(
    "module,name,doc",
    [
        ("pipelines.cli", "mtssl-data", "cli.md"),
        ("mtssl.train.cli", "mtssl-train", "cli-train.md"),
        ("mtssl.eval.cli", "mtssl-eval", "cli-eval.md"),
        ("mtssl.report.cli", "mtssl-report", "cli-report.md"),
        ("mtssl.demo", "mtssl-demo", "cli-demo.md"),
        ("mtssl.sweep.cli", "mtssl-sweep", "cli-sweep.md"),
    ],
)
def test_cli_reference_in_docs_is_current(tmp_path, module, name, doc):
    """docs/cli*.md are generated: `typer MODULE utils docs --name NAME --output docs/DOC`."""
    import subprocess
    import sys

    generated = tmp_path / doc
    cmd = [sys.executable, "-m", "typer", module, "utils", "docs", "--name", name]
    subprocess.run([*cmd, "--output", str(generated)], check=True, capture_output=True)
    assert generated.read_text() == (Path(__file__).parents[2] / "docs" / doc).read_text()
