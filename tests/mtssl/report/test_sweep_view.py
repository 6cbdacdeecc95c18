"""``mtssl-report SWEEP_DIR``: runs grouped over their seeds, margins mean ± sd, the sweep's pictures."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mtssl.report.cli import app
from mtssl.report.runs import load_run
from mtssl.report.sweep import groups, stats, table_rows

from .conftest import make_run


def make_sweep(root: Path, shards: Path) -> Path:
    accs = {"alone-s0": 0.60, "alone-s1": 0.64, "all-s0": 0.70, "all-s1": 0.74, "all-s2": 0.78}
    items = {}
    for name, acc in accs.items():
        make_run(root / "runs" / name, shards, probe_acc=acc)
        items[name] = {"status": "ok", "train_s": 100.0 if name.startswith("alone") else 300.0,
                       "folder": str(root / "runs" / name)}  # fmt: skip
    items["all-s2"]["status"], items["all-s2"]["error"] = "failed", "mtssl-eval probe: out of memory"
    (root / "sweep.json").write_text(json.dumps({"items": items}))
    return root


def test_runs_are_grouped_over_seeds_with_mean_and_spread(tmp_path: Path, shards: Path):
    sweep = make_sweep(tmp_path / "sweep", shards)
    runs = [load_run(p) for p in sorted((sweep / "runs").iterdir())]
    found = {g.name: g for g in groups(runs, json.loads((sweep / "sweep.json").read_text()))}
    assert sorted(found) == ["all", "alone"] and sorted(found["all"].seeds) == [0, 1, 2]
    mean, sd = stats(found["alone"].values("flowers5", "margin"))
    assert abs(mean - 0.10) < 1e-9 and abs(sd - 0.04 / 2**0.5) < 1e-9  # margins 0.08 and 0.12 over 0.52
    headers, rows = table_rows([found["alone"], found["all"]], ["flowers5"])
    assert headers[:4] == ["run", "seeds", "flowers5: best accuracy", "flowers5: margin (points)"]
    assert rows[0][2:5] == ["62.0 ± 2.8%", "+10.0 ± 2.8", "1m40s"]
    assert rows[1][-1].startswith("s2: mtssl-eval probe: out of memory")


def test_the_report_of_a_sweep_folder_starts_with_the_sweep_view(tmp_path: Path, shards: Path):
    sweep = make_sweep(tmp_path / "sweep", shards)
    result = CliRunner().invoke(app, [str(sweep), "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.index("Sweep: each run over its seeds") < page.index("Comparison (ablation view)")
    for png in ("sweep-margins-flowers5.png", "sweep-validation.png", "sweep-lasso.png"):
        assert (tmp_path / "report" / png).read_bytes().startswith(b"\x89PNG"), png
    both = CliRunner().invoke(app, [str(sweep), str(sweep / "runs" / "all-s0")])
    assert both.exit_code == 2 and "not both" in both.output


def test_a_training_time_the_record_lost_comes_from_the_runs_own_end_record(tmp_path: Path):
    from mtssl.report.sweep import train_seconds

    run = tmp_path / "runs" / "motion-s0"  # trained; the driver was stopped before it recorded the time
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"event": "end", "step": 1800, "wall_s": 760.5}\n')
    assert train_seconds({"folder": str(run)}) == 760.5  # no record of it at all
    assert train_seconds({"train_s": 0.0, "status": "ok", "folder": str(run)}) == 760.5  # a rerun only probed it
    assert train_seconds({"train_s": 1086.1, "status": "ok", "folder": str(run)}) == 1086.1  # all attempts
    # an attempt stopped mid-training (its time recorded), then one that trained and was not recorded
    assert train_seconds({"train_s": 300.0, "status": "interrupted", "folder": str(run)}) == 1060.5
    assert train_seconds({"train_s": 300.0, "status": "interrupted", "folder": str(tmp_path)}) == 300.0
    assert train_seconds({"train_s": 0.0, "folder": str(tmp_path / "nowhere")}) is None
    assert train_seconds({}) is None
