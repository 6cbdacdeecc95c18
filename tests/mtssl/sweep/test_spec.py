"""The sweep spec and plan: the issue's form, checked options, per-run seeds and needs, the shipped
ablation grid, and the refusal of a run folder trained with other options."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest
import yaml

from mtssl.sweep.plan import check_folders, plan, write_configs
from mtssl.sweep.spec import SpecError, parse_spec, read_spec
from mtssl.train.config_file import read_config_file, resolve_options

ISSUE_FORM = """
shards: shards/
common: {preset: cpu}
runs:
  relpos-alone: {tasks: relpos}
  all-lasso: {tasks: "relpos,color,exemplar,motion"}
  all-naive: {tasks: "relpos,color,exemplar,motion", lasso: false}
seeds: [0, 1]
probe:
  flowers5: {images: photos, split: 0.5}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    (tmp_path / "photos" / "a").mkdir(parents=True)
    path = tmp_path / "sweep.yaml"
    path.write_text(ISSUE_FORM)
    return path


def test_the_issues_spec_form_reads_into_runs_seeds_and_probes(spec_file: Path, tmp_path: Path):
    spec = read_spec(spec_file)
    assert spec.shards == str(tmp_path / "shards")  # relative to the spec's folder
    assert [r.name for r in spec.runs] == ["relpos-alone", "all-lasso", "all-naive"]
    assert spec.runs[2].options == {"tasks": ("relpos", "color", "exemplar", "motion"), "lasso": False}
    assert spec.seeds == (0, 1)
    assert spec.probes == {"flowers5": {"images": str(tmp_path / "photos"), "split": 0.5}}
    assert read_spec(spec_file, shards="s3://bucket/shards").shards == "s3://bucket/shards"


def test_every_item_is_a_run_folder_named_run_and_seed_with_the_resolved_config(spec_file: Path, tmp_path: Path):
    items, notes = plan(read_spec(spec_file), tmp_path / "out")
    assert notes == []
    assert [i.name for i in items] == [f"{r}-s{s}" for r in ("relpos-alone", "all-lasso", "all-naive") for s in (0, 1)]
    naive = items[5]
    assert naive.folder == tmp_path / "out" / "runs" / "all-naive-s1"
    assert (naive.cfg.preset, naive.cfg.lr, naive.cfg.lasso, naive.cfg.seed) == ("cpu", 2e-4, False, 1)
    write_configs(items)
    options = read_config_file(naive.config_file)  # the file mtssl-train --config reads
    assert resolve_options(options) == naive.cfg


def test_per_run_seeds_and_needed_sets(tmp_path: Path):
    data = yaml.safe_load(ISSUE_FORM.replace("photos", str(tmp_path)))
    data["runs"]["rotation"] = {"tasks": "rotation", "needs": "rotation", "seeds": [3]}
    data["runs"]["deep"] = {"tasks": "relpos", "depth": 50, "seeds": [0]}
    spec = parse_spec(data, tmp_path)
    items, notes = plan(spec, tmp_path / "out", available={"relpos", "color", "exemplar", "motion"})
    assert [i.name for i in items][-1] == "deep-s0" and "rotation-s3" not in [i.name for i in items]
    assert notes == [f"rotation: left out, no rotation shard set under {tmp_path / 'shards'}"]
    items, _ = plan(spec, tmp_path / "out", available={"rotation"})
    assert "rotation-s3" in [i.name for i in items]


@pytest.mark.parametrize(
    "change, words",
    [
        (
            {"runs": {"a": {"tasks": "relpos", "batch_sise": 3}}},
            "run a: no option 'batch_sise' (did you mean batch_size?)",
        ),
        ({"runs": {"a": {"steps": "many"}}}, "run a: steps takes an integer"),
        ({"runs": {"A b": {}}}, "run name 'A b'"),
        ({"runs": {"a": {"seed": 3}}}, "run a sets seed, which the sweep sets"),
        ({"common": {"out": "x"}}, "common sets out"),
        ({"runs": {}}, "no runs"),
        ({"seeds": [0, -1]}, "seeds is a list of integers >= 0"),
        ({"probe": {"p": {"images": "photos", "train": "photos"}}}, "either images (and split) or both train and val"),
        ({"probe": {"p": {"images": "nope"}}}, "images"),
        ({"probe": {"p": {"images": "photos", "sise": 3}}}, "unknown option(s) sise"),
        ({"probes": {}}, "unknown key(s) probes"),
        ({"shards": None}, "no shards"),
    ],
)
def test_a_bad_spec_is_one_line_naming_what(spec_file: Path, change: dict, words: str):
    data = yaml.safe_load(spec_file.read_text()) | change
    with pytest.raises(SpecError) as caught:
        parse_spec(data, spec_file.parent, source=str(spec_file))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_folder_trained_with_other_options_is_refused_naming_them(spec_file: Path, tmp_path: Path):
    items, _ = plan(read_spec(spec_file), tmp_path / "out")
    item = items[0]
    item.folder.mkdir(parents=True)
    saved = replace(item.cfg, lr=1e-3, workers=7)  # workers does not change what a run computes
    (item.folder / "config.json").write_text(json.dumps(json.loads(saved.to_json())))
    with pytest.raises(
        SpecError, match=r"relpos-alone-s0 was trained with other options than the spec's: lr 0.001 \(spec: 0.0002\)\. "
    ):
        check_folders(items)
    (item.folder / "config.json").write_text(json.dumps(json.loads(replace(item.cfg, workers=7).to_json())))
    check_folders(items)


def test_the_shipped_ablation_grid_has_the_papers_rows(tmp_path: Path):
    path = Path(str(resources.files("mtssl.sweep") / "specs" / "ablation.yaml"))
    spec = read_spec(path, shards=str(tmp_path))
    runs = {r.name: r for r in spec.runs}
    four = ("relpos", "color", "exemplar", "motion")
    for task in four:
        assert runs[task].options["tasks"] == (task,)
        x4 = runs[f"{task}-x4"].options
        assert x4.get("batch_size") == 64 or x4.get("task_batch") == {"exemplar": 128}
    assert runs["all-lasso"].options == {"tasks": four}
    assert runs["all-naive"].options["lasso"] is False and runs["all-native"].options["input_mode"] == "native"
    assert runs["all-lasso-d50"].options["depth"] == 50
    assert runs["all-six"].needs == ("rotation", "jigsaw")
    assert spec.common == {"preset": "cpu"} and spec.seeds == (0, 1)


def test_probe_sets_from_the_command_line():
    from mtssl.sweep.cli import probe_options

    assert probe_options(["f5=/data/f5", "photos=/p/train,/p/val"]) == {
        "f5": {"images": "/data/f5", "split": 0.5},
        "photos": {"train": "/p/train", "val": "/p/val"},
    }
    import typer

    for bad in ("f5", "=/x", "a=b,c,d", "a=b,"):
        with pytest.raises(typer.Exit):
            probe_options([bad])


def test_a_run_without_tasks_is_not_pinned_to_the_sets_it_found(spec_file: Path, tmp_path: Path):
    data = yaml.safe_load(spec_file.read_text())
    data["runs"] = {"every-set": {}}
    items, _ = plan(parse_spec(data, spec_file.parent), tmp_path / "out")
    item = items[0]
    assert item.cfg.tasks is None
    write_configs(items)
    assert "tasks" not in read_config_file(item.config_file)  # a --resume with it keeps the run's tasks
    item.folder.mkdir(parents=True)
    found = replace(item.cfg, tasks=("relpos", "color"))  # what mtssl-train saves: the sets it found
    (item.folder / "config.json").write_text(found.to_json())
    check_folders(items)


def test_report_only_writes_the_comparison_of_what_is_finished_without_running(spec_file: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from mtssl.sweep.cli import app

    (tmp_path / "shards").mkdir()  # no set yet: nothing is trained, the table says so
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(spec_file), "--out", str(out), "--report-only", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["run"] for r in rows] == ["relpos-alone", "all-lasso", "all-naive"] and all(not r["done"] for r in rows)
    assert (out / "table.md").is_file() and not (out / "runs").exists() and not (out / "sweep.json").exists()


def test_only_picks_runs_or_single_seeds_and_a_misspelt_name_is_one_line(spec_file: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from mtssl.sweep.cli import app

    (tmp_path / "shards").mkdir()
    out = str(tmp_path / "out")
    result = CliRunner().invoke(app, [str(spec_file), "-o", out, "--only", "all-lasso, relpos-alone-s1", "--dry-run"])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["relpos-alone-s1", "all-lasso-s0", "all-lasso-s1"]
    result = CliRunner().invoke(app, [str(spec_file), "-o", out, "--only", "all-laso", "--dry-run"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "no such run" in result.stderr and "did you mean all-lasso" in result.stderr


def test_a_run_found_trained_is_recorded_with_the_time_of_its_unrecorded_last_attempt(spec_file, tmp_path):
    from mtssl.sweep.schedule import read_record, update_record

    out = tmp_path / "out"
    item = plan(read_spec(spec_file), out)[0][0]
    item.folder.mkdir(parents=True)
    (item.folder / "trunk.pt").write_bytes(b"")
    (item.folder / "log.jsonl").write_text(json.dumps({"event": "end", "step": item.cfg.steps, "wall_s": 500.0}))
    probed = {"train_s": 0.0, "probe_s": {"flowers5": 9.0}, "status": "ok"}
    for before, after in [(None, 500.0), ({"train_s": 500.0, "status": "ok"}, 500.0)]:
        record = {"items": {item.name: before} if before else {}}
        update_record(out, record, item, probed)  # a rerun that only probed
        assert read_record(out)["items"][item.name]["train_s"] == after
    record = {"items": {item.name: {"train_s": 120.0, "status": "interrupted"}}}  # stopped mid-run, then the
    update_record(out, record, item, probed)  # attempt that finished it was never recorded
    assert read_record(out)["items"][item.name]["train_s"] == 620.0
