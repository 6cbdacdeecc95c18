"""Finding shard sets by their manifests, and the clear error for each kind of set a run cannot use."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtssl.contract import MANIFEST_FILE, SCHEMA_VERSION
from mtssl.contract.manifest import Declared
from mtssl.data.shardsets import ShardSetError, check_run, load_set, md5_file, open_sets
from mtssl.tasks import TASKS, ExemplarHeadConfig, MotionHeadConfig, RelposHeadConfig
from mtssl.tasks.base import RunOptionError, RunOptions
from mtssl.train.cli import app


@pytest.fixture
def shards(shard_root: Path, tmp_path: Path) -> Path:
    """A private copy of the session's sets, free to damage."""
    return Path(shutil.copytree(shard_root, tmp_path / "shards"))


def edit_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest.update(changes)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_sets_are_found_by_their_manifests(shards):
    (shards / "motion").rename(shards / "frames")  # the task comes from the manifest, not the folder
    sets = open_sets(shards, TASKS)
    assert list(sets) == list(TASKS)
    assert Path(sets["motion"].root).name == "frames" and sets["color"].samples == 8
    assert list(open_sets(shards, TASKS, ["motion", "relpos"])) == ["relpos", "motion"]
    assert list(open_sets(shards / "color", TASKS)) == ["color"]  # a set folder itself


def test_a_missing_set_names_the_task_and_the_build_command(shards):
    shutil.rmtree(shards / "exemplar")
    with pytest.raises(ShardSetError, match=r"no exemplar shard set .*mtssl-data build exemplar"):
        open_sets(shards, TASKS, ["relpos", "exemplar"])


def test_an_unfinished_build_is_refused(shards):
    (shards / "color" / MANIFEST_FILE).unlink()
    with pytest.raises(ShardSetError, match="did not finish"):
        open_sets(shards, TASKS)


def test_a_corrupt_manifest_is_refused(shards):
    (shards / "relpos" / MANIFEST_FILE).write_text('{"task": "relpos", "schema_ver')
    with pytest.raises(ShardSetError, match="corrupt"):
        open_sets(shards, TASKS, ["relpos"])


def test_another_schema_version_is_refused_and_an_older_readable_one_read(shards):
    edit_manifest(shards / "motion", schema_version=1)  # version 2 changed an encoder, not what decodes
    assert load_set(shards / "motion").manifest["schema_version"] == 1
    edit_manifest(shards / "motion", schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(ShardSetError, match=f"schema version {SCHEMA_VERSION + 1}.*reads versions 1, 2"):
        open_sets(shards, TASKS, ["motion"])


def test_missing_and_truncated_shards_are_refused(shards):
    first = sorted((shards / "color").glob("*.tar"))[0]
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardSetError, match=rf"{first.name} has {len(data) // 2} bytes.*mtssl-data verify"):
        load_set(shards / "color")
    first.unlink()
    with pytest.raises(ShardSetError, match=f"{first.name} is missing"):
        load_set(shards / "color")


def test_verify_catches_a_changed_byte_of_the_same_size(shards):
    first = sorted((shards / "relpos").glob("*.tar"))[0]
    data = bytearray(first.read_bytes())
    data[1000] ^= 0xFF
    first.write_bytes(bytes(data))
    load_set(shards / "relpos")  # sizes agree: only the md5 can tell
    with pytest.raises(ShardSetError, match="fails its md5 check"):
        load_set(shards / "relpos", verify=True)


def test_a_patch_size_other_than_the_runs_is_refused(shard_root):
    relpos, exemplar = load_set(shard_root / "relpos"), load_set(shard_root / "exemplar")
    exemplar_run = RunOptions(batch_size=2, config=ExemplarHeadConfig(view_size=32))
    check_run(relpos, TASKS["relpos"], RunOptions(config=RelposHeadConfig(patch_size=32)), ("rgb.jpg",))
    check_run(exemplar, TASKS["exemplar"], exemplar_run, ("rgb.jpg",))
    wrong = r"built with --patch 32, but this run expects relpos.patch_size 96\. Pass --task-opt relpos.patch_size=32"
    with pytest.raises(ShardSetError, match=wrong + r".*mtssl-data build relpos --patch 96"):
        check_run(relpos, TASKS["relpos"], RunOptions(config=RelposHeadConfig(patch_size=96)), ("rgb.jpg",))
    exemplar_run = RunOptions(batch_size=2, config=ExemplarHeadConfig(view_size=64))
    with pytest.raises(ShardSetError, match=r"built with --view-size 32, .* exemplar.view_size 64"):
        check_run(exemplar, TASKS["exemplar"], exemplar_run, ("rgb.jpg",))


def test_a_motion_crop_larger_than_the_frames_is_refused(shard_root):
    motion = load_set(shard_root / "motion")
    check_run(motion, TASKS["motion"], RunOptions(config=MotionHeadConfig(crop=96)), ("rgb.jpg", "mask.png"))
    with pytest.raises(ShardSetError, match=r"shorter side is 96 \(--size\), smaller than motion.crop 128"):
        check_run(motion, TASKS["motion"], RunOptions(config=MotionHeadConfig(crop=128)), ("rgb.jpg", "mask.png"))


def test_the_motion_loader_crops_to_the_run_else_to_the_stored_frames(shard_root):
    motion = load_set(shard_root / "motion")
    assert TASKS["motion"].loader_crop(motion, RunOptions()) == 96
    assert TASKS["motion"].loader_crop(motion, RunOptions(config=MotionHeadConfig(crop=64))) == 64


def test_a_batch_the_task_cannot_train_with_is_a_run_option_error(shard_root):
    exemplar = load_set(shard_root / "exemplar")
    with pytest.raises(RunOptionError, match="at least 2 images per batch: raise --task-batch exemplar"):
        check_run(exemplar, TASKS["exemplar"], RunOptions(batch_size=1), ("rgb.jpg",))


def test_sets_declare_what_tasks_check_and_sets_built_before_the_declarations_read_alike(shards):
    declared = {task: load_set(shards / task).declared for task in ("relpos", "exemplar", "motion")}
    assert declared == {
        "relpos": {"patch_side": Declared(32, "--patch")},
        "exemplar": {"view_side": Declared(32, "--view-size"), "views": Declared(4, "--views")},
        "motion": {"frame_side": Declared(96, "--size")},
    }
    for task, before in declared.items():
        manifest = json.loads((shards / task / MANIFEST_FILE).read_text())
        del manifest["declared"]  # as written before manifests declared anything
        (shards / task / MANIFEST_FILE).write_text(json.dumps(manifest))
        assert load_set(shards / task).declared == before, task
    edit_manifest(shards / "exemplar", declared={"view_side": {"value": 32, "option": "--view-size"}})
    with pytest.raises(ShardSetError, match="declares no views in its manifest; rebuild it"):
        check_run(load_set(shards / "exemplar"), TASKS["exemplar"], RunOptions(batch_size=2), ("rgb.jpg",))


def test_a_color_set_without_its_prior_is_refused(shards):
    edit_manifest(shards / "color", ab_prior=None)
    with pytest.raises(ShardSetError, match="ab_prior"):
        check_run(load_set(shards / "color"), TASKS["color"], RunOptions(), ("l.jpg", "bins.png", "ab.npy", "json"))


def without_field(tar_path: Path, field: str) -> None:
    """Rewrite a tar without one field of every sample."""
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if not m.name.endswith("." + field)]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))
    tar_path.write_bytes(buffer.getvalue())


def test_a_set_lacking_the_input_modes_field_is_refused(shards):
    folder = shards / "exemplar"
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    for entry in manifest["shardlist"]:
        without_field(folder / entry["url"], "rgb.jpg")
        entry["filesize"], entry["md5sum"] = (folder / entry["url"]).stat().st_size, md5_file(folder / entry["url"])
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    sset = load_set(folder, verify=True)
    check_run(sset, TASKS["exemplar"], RunOptions(input_mode="native", batch_size=2), ("json",))
    with pytest.raises(ShardSetError, match=r"no rgb.jpg field, which input mode 'harmonized' reads"):
        check_run(sset, TASKS["exemplar"], RunOptions(input_mode="harmonized", batch_size=2), ("rgb.jpg",))


def test_the_cli_reports_an_unusable_set_in_one_line(shards, tmp_path):
    edit_manifest(shards / "relpos", schema_version=0)
    result = CliRunner().invoke(app, ["--shards", str(shards), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 2
    assert "error:" in result.output and "schema version 0" in result.output
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(app, ["--shards", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_the_cli_reports_a_batch_the_task_cannot_train_with_in_one_line(shard_root, tmp_path):
    args = ["--shards", str(shard_root), "--out", str(tmp_path / "run"), "--device", "cpu", "--tasks", "exemplar"]
    result = CliRunner().invoke(app, [*args, "--task-batch", "exemplar=1"])
    assert result.exit_code == 2
    expected = "error: exemplar's triplet loss needs at least 2 images per batch: raise --task-batch exemplar"
    assert result.output.strip().splitlines() == [expected]
