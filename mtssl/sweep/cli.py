"""``mtssl-sweep``: many training runs over one shard build, scheduled on Ray, probed, and compared.

``mtssl-sweep SPEC.yaml --out DIR`` trains every (run, seed) of the spec (``mtssl.sweep.spec``) as a normal
run folder ``DIR/runs/<run>-s<seed>``, probes each on the spec's probe sets, and writes one comparison:
``DIR/table.md`` and ``DIR/report/index.html``. Rerun the same command to go on: finished runs and probes
are kept, an interrupted run resumes from its newest checkpoint, a run folder trained with other options is
refused. ``--ablation`` is the paper's ablation grid shipped with mtssl (``mtssl/sweep/specs/ablation.yaml``).
"""

from __future__ import annotations

import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mtssl.cli_style import HelpCommand, fail, make_app

if TYPE_CHECKING:
    from mtssl.sweep.spec import SweepSpec

app = make_app(help=__doc__)

ABLATION = "ablation.yaml"


def spec_path(spec: Path | None, ablation: bool) -> Path:
    if ablation == (spec is not None):
        raise fail("give a SPEC file or --ablation (the shipped ablation grid), not both")
    if ablation:
        return Path(str(resources.files("mtssl.sweep") / "specs" / ABLATION))
    return spec  # type: ignore[return-value]


def probe_options(items: list[str]) -> dict[str, dict]:
    """``--probe NAME=DIR`` -> ``{NAME: {images: DIR, split: 0.5}}``; ``NAME=TRAIN,VAL`` -> ``{train:, val:}``."""
    out: dict[str, dict] = {}
    for text in items:
        name, sep, folders = text.partition("=")
        parts = [p.strip() for p in folders.split(",")]
        if not sep or not name.strip() or len(parts) > 2 or not all(parts):
            raise fail(f"--probe takes NAME=DIR or NAME=TRAIN_DIR,VAL_DIR, got {text!r}")
        out[name.strip()] = (
            {"images": parts[0], "split": 0.5} if len(parts) == 1 else {"train": parts[0], "val": parts[1]}
        )
    return out


@app.command(cls=HelpCommand)
def main(
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="The sweep's YAML spec (shards, common, runs, seeds, probe).", metavar="SPEC", dir_okay=False
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The sweep's folder: runs/, configs/, logs/, report/.")
    ] = Path("sweeps/sweep"),
    ablation: Annotated[
        bool, typer.Option("--ablation", help="Run the shipped ablation grid instead of a SPEC.")
    ] = False,
    shards: Annotated[
        str | None, typer.Option(help="Shard sets to train on, instead of the spec's shards.", metavar="DIR|URL")
    ] = None,
    probe: Annotated[
        list[str] | None,
        typer.Option(
            help="Add a probe set: NAME=DIR (a labelled folder, split in halves) or NAME=TRAIN,VAL; repeatable.",
            metavar="NAME=DIR",
        ),
    ] = None,
    parallel: Annotated[
        int | None,
        typer.Option(help="Runs at once (default: one per GPU, or 1); each holds the CPUs over this.", min=1),
    ] = None,
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster (default: local Ray).")] = None,
    only: Annotated[
        str | None,
        typer.Option(
            help="Train and probe only these runs (all-lasso) or runs and seeds (all-lasso-s1), comma-separated; "
            "the comparison still shows every finished run.",
            metavar="RUN,...",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would run, and exit.")] = False,
    report_only: Annotated[
        bool,
        typer.Option(
            "--report-only",
            help="Write the comparison (table.md, report/, --json) from the runs finished so far, and exit; "
            "safe while the sweep runs.",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison table as JSON on stdout.")] = False,
) -> None:
    """Train, probe and compare every run of a sweep spec, on Ray; rerun to resume."""
    from mtssl.contract.interrupts import exit_code, signal_name, sigterm_as_interrupt
    from mtssl.contract.locks import LockHeld, hold
    from mtssl.sweep.plan import select
    from mtssl.sweep.spec import SpecError

    try:
        items, sweep = prepare(spec_path(spec, ablation), out, shards, probe_options(probe or []))
        chosen = select(items, [name.strip() for name in (only or "").split(",") if name.strip()])
        if dry_run:
            show_plan(chosen)
            return
        if report_only:
            conclude(items, out, json_out, sweep.source)
            return
        with hold(out, "sweep"), sigterm_as_interrupt():
            failed = execute(chosen, out, parallel, ray_address, sweep.resources)
    except (SpecError, ValueError) as exc:
        raise fail(str(exc)) from None
    except LockHeld as exc:
        raise fail(str(exc), 1) from None
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the running runs stop as on Ctrl-C, keeping checkpoints
        kept = f"interrupted ({signal_name(exc)}): finished runs and probes in {out} are kept"
        typer.echo(f"{kept}; rerun the same command to go on", err=True)
        raise typer.Exit(exit_code(exc)) from None
    conclude(items, out, json_out, sweep.source)
    if failed:
        raise typer.Exit(1)


def prepare(path: Path, out: Path, shards: str | None, extra_probes: dict[str, dict]) -> tuple[list, SweepSpec]:
    """The items of the spec, checked against what the folders hold; config files written."""
    from mtssl.data.shardsets import ShardSetError, discover
    from mtssl.sweep.plan import check_folders, plan, write_configs
    from mtssl.sweep.spec import SpecError, parse_spec, read_spec
    from mtssl.tasks import TASKS

    spec = read_spec(path, shards)
    if extra_probes:
        merged = {**{k: dict(v) for k, v in spec.probes.items()}, **extra_probes}
        spec = parse_spec(spec_data(spec, merged), Path.cwd(), None, spec.source)
    try:
        available = set(discover(spec.shards, TASKS))
    except (ShardSetError, OSError) as exc:
        raise SpecError(f"shards {spec.shards}: {exc}") from None
    items, notes = plan(spec, out.resolve(), available)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    check_folders(items)
    write_configs(items)
    return items, spec


def spec_data(spec: SweepSpec, probes: dict[str, dict]) -> dict:
    """A spec back in its file form (to re-check it with added probe sets)."""
    runs = {r.name: {**r.options, "needs": list(r.needs), "seeds": list(r.seeds)} for r in spec.runs}
    return {"shards": spec.shards, "common": spec.common, "runs": runs, "seeds": list(spec.seeds), "probe": probes} | (
        {"resources": spec.resources} if spec.resources else {}
    )


def show_plan(items: list) -> None:
    for item in items:
        state = "done" if item.done else "probes left" if item.trained else "resume" if item.started else "new"
        typer.echo(f"{item.name:28s} {state:12s} {item.folder}")


def execute(
    items: list, out: Path, parallel: int | None, ray_address: str | None, resources: dict[str, float]
) -> list[str]:
    """Run what is left on Ray; the names of the items that failed."""
    from mtssl.sweep.schedule import ray_session, run_on_ray, share_of, stderr_line

    todo = [item for item in items if not item.done]
    stderr_line(f"sweep: {len(items)} runs, {len(items) - len(todo)} done, {len(todo)} to run -> {out}")
    if not todo:
        return []
    tic = time.perf_counter()
    with ray_session(ray_address) as ray:
        share = share_of(ray, parallel, resources)
        stderr_line(f"ray: {share.parallel} at once, {share.cpus:g} CPU and {share.gpus:g} GPU each")
        results = run_on_ray(todo, out, share, ray, stderr_line)
    stderr_line(f"sweep: {len(results)} runs in {time.perf_counter() - tic:.0f}s")
    return [name for name, result in results.items() if result["status"] != "ok"]


def conclude(items: list, out: Path, json_out: bool, source: str) -> None:
    """The comparison: table.md, the report, and the table on stdout (or as JSON)."""
    from mtssl.sweep.schedule import read_record
    from mtssl.sweep.summary import markdown, rows, write_table

    table = rows(items, read_record(out))
    write_table(out, table)
    page = write_sweep_report(items, out)
    if json_out:
        typer.echo(json.dumps({"spec": source, "out": str(out), "rows": table}, indent=1))
        return
    typer.echo(markdown(table))
    typer.echo(f"report: {page}" if page else "report: no finished run yet", err=True)


def write_sweep_report(items: list, out: Path) -> Path | None:
    """``mtssl-report OUT``: the report of the sweep folder, grouped over seeds."""
    from mtssl.report.cli import load_runs
    from mtssl.report.page import write_report
    from mtssl.report.sweep import read_record

    folders = [item.folder for item in items if (item.folder / "config.json").is_file()]
    if not folders:
        return None
    return write_report(load_runs(folders), out / "report", read_record(out))


if __name__ == "__main__":
    sys.exit(app())
