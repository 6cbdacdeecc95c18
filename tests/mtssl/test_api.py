"""The Python API: what ``dir(mtssl)`` shows, reading a set, and every code block of docs/api.md, run as is."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import mtssl
from mtssl.model.network import MultiTaskNet, NetworkConfig
from mtssl.train.checkpoint import export_trunk

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def code_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", API_PAGE.read_text(), flags=re.S)


def test_dir_and_help_show_the_api_and_importing_it_stays_cheap():
    names = set(dir(mtssl))
    assert {
        "load_trunk",
        "load_set",
        "open_sets",
        "read_samples",
        "MultiTaskNet",
        "NetworkConfig",
        "run_training",
    } <= names
    assert names == set(mtssl.__all__)
    for name in mtssl.__all__:
        assert getattr(mtssl, name) is not None
        assert f"`mtssl.{name}" in API_PAGE.read_text() or name in ("LoadedTrunk", "ShardSet"), name
    code = "import mtssl, sys, pydoc\nassert 'torch' not in sys.modules\nprint(pydoc.render_doc(mtssl))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "load_trunk" in shown and "read_samples" in shown


def test_read_samples_yields_every_sample_of_the_set_decoded(shard_root: Path):
    relpos = mtssl.load_set(shard_root / "relpos")
    samples = list(mtssl.read_samples(relpos))
    assert len(samples) == relpos.samples == len({s["__key__"] for s in samples})
    first = samples[0]
    assert first["rgb.jpg"].ndim == 3 and first["rgb.jpg"].shape[2] == 3 and first["rgb.jpg"].dtype.name == "uint8"
    assert isinstance(first["json"], dict)
    assert [s["__key__"] for s in mtssl.read_samples(str(shard_root / "relpos"), limit=3)] == [
        s["__key__"] for s in samples[:3]
    ]


@pytest.mark.slow
def test_every_code_block_of_the_api_page_runs(shard_root: Path, tmp_path: Path, monkeypatch):
    (tmp_path / "shards").symlink_to(shard_root)
    net = MultiTaskNet(NetworkConfig(tasks=("relpos", "color"), depth=18, width=8))
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    export_trunk(tmp_path / "runs" / "demo", net, __import__("json").dumps(net.resolved_config()), step=7)
    monkeypatch.chdir(tmp_path)
    blocks = code_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        exec(compile(block, str(API_PAGE), "exec"), {})
    assert (tmp_path / "runs" / "api" / "trunk.pt").is_file()
