"""``mtssl-demo``: the one demo command. The whole project on the embedded sample, end to end, in about ten
minutes on 2 CPU cores.

1. the producer's step, in its own process (``python -m pipelines.cli demo``, a hidden command of
   ``mtssl-data``): writes the sample (photos, synthetic videos with exact masks, real clips, the labelled probe
   sets), builds the four shard sets with 2 local Ray workers, verifies them, draws their previews
   (``SHARDS/TASK/preview.png``, where ``mtssl-report`` reads them) and scores the motion masks;
2. pretrains a shortened ``--preset cpu`` run on the four sets;
3. probes the trunk on each embedded labelled set (``mtssl-eval probe``), beside random-init trunks;
4. writes the report (``mtssl-report``);
and prints where everything is. Run again, it reuses what is complete and current (the shard builds
resume, a finished run with the same options is kept) and replaces what is not, and says which.

Streams: progress (the producer's, the trainer's, reuse and replace notes) on stderr; the probe tables and
the final summary on stdout.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mtssl.cli_style import HelpCommand, fail, make_app

if TYPE_CHECKING:
    from mtssl.train.config import TrainConfig

HELP = (  # rich keeps single line breaks: one line per paragraph or list item here
    "The one demo command: the whole project on the embedded sample, end to end, in about ten minutes on 2 CPU "
    "cores.\n\n"
    "It runs every step in turn:\n\n"
    "1. the sample and its shard sets (the producer's step, in its own process): photos, synthetic videos with "
    "exact masks, real clips and labelled probe sets; four shard sets built with local Ray workers, verified, and "
    "their previews drawn into SHARDS/TASK/preview.png, where the report shows them;\n"
    "2. a shortened --preset cpu pretraining on the four sets (as mtssl-train);\n"
    "3. probes of the trunk on each labelled set, beside random-init trunks (as mtssl-eval probe);\n"
    "4. the report (as mtssl-report).\n\n"
    "Run again, it reuses what is complete and current (the shard builds resume, a finished run with the same "
    "options is kept) and replaces what is not, and says which. Progress goes to stderr; the probe tables and the "
    "summary of where everything is, to stdout."
)

app = make_app()

FOLDERS, SIZE = "Folders", "Size"  # the help's panels


@app.command(cls=HelpCommand, help=HELP)
def main(
    data: Annotated[
        Path, typer.Option(help="Where the sample data is written.", file_okay=False, rich_help_panel=FOLDERS)
    ] = Path("data/sample"),
    shards: Annotated[
        Path,
        typer.Option(
            help="Where the shard sets are built, one folder per task.", file_okay=False, rich_help_panel=FOLDERS
        ),
    ] = Path("shards"),
    run: Annotated[
        Path, typer.Option(help="The training run's folder.", file_okay=False, rich_help_panel=FOLDERS)
    ] = Path("runs/demo"),
    report: Annotated[
        Path,
        typer.Option(
            help="The report's folder (index.html and its PNG files).", file_okay=False, rich_help_panel=FOLDERS
        ),
    ] = Path("report"),
    steps: Annotated[
        int, typer.Option(help="Training steps (the full --preset cpu takes 1800).", min=1, rich_help_panel=SIZE)
    ] = 500,
    workers: Annotated[
        int,
        typer.Option(
            help="Ray workers for the builds and data-loader workers for training.", min=0, rich_help_panel=SIZE
        ),
    ] = 2,
    random_seeds: Annotated[
        int, typer.Option(help="Random-init trunks of the probes' baseline rows.", min=1, rich_help_panel=SIZE)
    ] = 3,
) -> None:
    """Sample -> shards -> pretraining -> probes -> report, on the embedded sample (the help is :data:`HELP`)."""
    from mtssl.contract.interrupts import exit_code, signal_name, sigterm_as_interrupt
    from mtssl.contract.locks import LockHeld
    from mtssl.data.shardsets import ShardSetError
    from mtssl.eval.probe import ProbeError
    from mtssl.model.loading import DamagedWeights
    from mtssl.report.runs import NotARunError
    from mtssl.train.config import ConfigError
    from mtssl.train.damage import DamagedData
    from mtssl.train.errors import SaveError
    from mtssl.train.interrupt import Interrupted

    try:
        with sigterm_as_interrupt():
            build_shards(data, shards, workers)
            trained = pretrain(shards, run, steps, workers)
            probes = probe_all(run, data / "labelled", random_seeds)
            page = write_report(run, report)
    except Interrupted as exc:
        typer.echo(f"{exc}; or rerun mtssl-demo, which starts the training again", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        typer.echo(f"interrupted ({signal_name(exc)}); rerun mtssl-demo: finished shard sets are kept", err=True)
        raise typer.Exit(exit_code(exc)) from None
    except (ConfigError, ShardSetError, ProbeError, DamagedWeights, NotARunError) as exc:
        raise fail(f"{exc}; rerun mtssl-demo once it is fixed: what is complete is kept") from exc
    except (SaveError, DamagedData, LockHeld) as exc:
        raise fail(f"{exc}; rerun mtssl-demo once it is fixed: what is complete is kept", 1) from exc
    summary = [
        "",
        "mtssl-demo done: every step of the project ran on the embedded sample (this one command is the demo).",
        f"  sample     {data}",
        f"  shards     {shards}/<task>; previews {shards}/<task>/preview.png, shown in the report",
        f"  run        {run} ({trained}); trunk {run / 'trunk.pt'}",
        *(f"  probe      {name}: {path}" for name, path in probes.items()),
        f"  report     {page}",
        f"open {page} in a browser; evaluate your own trunk with mtssl-eval probe --run {run} --images DIR",
    ]
    typer.echo("\n".join(summary))


def build_shards(data: Path, shards: Path, workers: int) -> None:
    """The producer's demo step, in its own process (mtssl never imports the producer's Ray code); its
    output is progress, so it goes to this process's stderr."""
    command = [sys.executable, "-m", "pipelines.cli", "demo", "--data", str(data), "--shards", str(shards)]
    result = subprocess.run([*command, "--workers", str(workers)], stdout=stderr_fd(), check=False)
    if result.returncode != 0:
        raise fail(f"building the shard sets failed (exit {result.returncode}): {' '.join(command)}", result.returncode)


def stderr_fd() -> int | None:
    """The file descriptor of stderr, for a child's stdout; None (inherit stdout) when stderr has none."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's stream: io.UnsupportedOperation
        return None


def demo_config(shards: Path, run: Path, steps: int, workers: int) -> TrainConfig:
    """``--preset cpu`` shortened to ``steps``: one checkpoint at the end, five validations; the warm-up stays 50."""
    from mtssl.train.config import TrainConfig
    from mtssl.train.presets import preset_values

    cfg = TrainConfig(**preset_values("cpu", {}), preset="cpu", shards=str(shards), out=str(run))
    return replace(cfg, steps=steps, save_every=steps, val_every=max(steps // 5, 1), workers=workers, progress=None)


def pretrain(shards: Path, run: Path, steps: int, workers: int) -> str:
    """Train the demo run, or keep the finished one with the same options; returns what was done."""
    from mtssl.train.loop import train

    cfg = demo_config(shards, run, steps, workers)
    if finished_with(run, cfg):
        typer.echo(f"reusing the finished run in {run} (same options; delete it to train again)", err=True)
        return "reused"
    if run.exists():
        typer.echo(f"replacing {run}: it holds an unfinished run or one with other options", err=True)
        shutil.rmtree(run)
    typer.echo(f"pretraining {steps} steps of --preset cpu on {shards} into {run}", err=True)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's step lines are the demo's progress
        train(cfg)
    return "trained"


def finished_with(run: Path, cfg: TrainConfig) -> bool:
    """True when ``run`` holds a run that ended at ``cfg.steps`` with ``cfg``'s options (paths aside)."""
    from mtssl.data.shardsets import open_sets
    from mtssl.tasks import TASKS
    from mtssl.train.config import TrainConfig
    from mtssl.train.logging import LOG_FILE, read_log

    try:
        saved = TrainConfig.from_json((run / "config.json").read_text())
        ended = any(r.get("event") == "end" for r in read_log(run / LOG_FILE))
        if cfg.tasks is None:  # the run saved the tasks it found under --shards (train resolves them)
            cfg = replace(cfg, tasks=tuple(open_sets(Path(cfg.shards), TASKS)))
    except (OSError, ValueError, TypeError):  # ShardSetError is a ValueError
        return False
    same = replace(saved, shards=cfg.shards, out=cfg.out, progress=cfg.progress) == cfg
    return same and ended and (run / "trunk.pt").is_file()


def probe_all(run: Path, labelled: Path, random_seeds: int) -> dict[str, Path]:
    """``mtssl-eval probe`` on every labelled set of the sample (``labelled/<set>/{train,val}``)."""
    from mtssl.eval.probe import ProbeOptions, run_probe

    written = {}
    for folder in sorted(p for p in labelled.iterdir() if (p / "train").is_dir() and (p / "val").is_dir()):
        options = ProbeOptions(run=run, train=folder / "train", val=folder / "val", random_seeds=random_seeds)
        result = run_probe(options)
        written[folder.name] = run / f"probe-{result['dataset']}.json"
    return written


def write_report(run: Path, report: Path) -> Path:
    from mtssl.report.cli import load_runs
    from mtssl.report.page import write_report as write_page

    return write_page(load_runs([run]), report)


if __name__ == "__main__":
    sys.exit(app())
