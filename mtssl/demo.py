"""``mtssl-demo``: the whole project on the embedded sample, end to end, in about ten minutes on 2 CPU cores.

1. ``mtssl-data demo`` (the producer, in its own process): writes the sample (photos, synthetic videos
   with exact masks, real clips, the labelled probe sets), builds the four shard sets with 2 local Ray
   workers, verifies them, draws their previews and scores the motion masks;
2. pretrains a shortened ``--preset cpu`` run on the four sets;
3. probes the trunk on each embedded labelled set (``mtssl-eval probe``), beside random-init trunks;
4. writes the report (``mtssl-report``);
and prints where everything is. Run again, it reuses what is complete and current (the shard builds
resume, a finished run with the same options is kept) and replaces what is not, and says which.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mtssl.train.config import TrainConfig

app = typer.Typer(help=__doc__, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    data: Annotated[Path, typer.Option(help="Where the sample data is written.")] = Path("data/sample"),
    shards: Annotated[Path, typer.Option(help="Where the shard sets are built.")] = Path("shards"),
    run: Annotated[Path, typer.Option(help="The training run's folder.")] = Path("runs/demo"),
    report: Annotated[Path, typer.Option(help="The report's folder.")] = Path("report"),
    steps: Annotated[int, typer.Option(help="Training steps (the full --preset cpu takes 1800).", min=1)] = 500,
    workers: Annotated[int, typer.Option(help="Ray workers for the builds and loader workers for training.")] = 2,
    random_seeds: Annotated[int, typer.Option(help="Random-init trunks of the probes' baseline rows.", min=1)] = 3,
) -> None:
    """Sample -> shards -> pretraining -> probes -> report, on the embedded sample."""
    from mtssl.contract.interrupts import exit_code, signal_name, sigterm_as_interrupt
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
    typer.echo("\n".join(["", "demo done:", f"  sample     {data}", f"  shards     {shards}/<task> (previews inside)"]))
    typer.echo(f"  run        {run} ({trained}); trunk {run / 'trunk.pt'}")
    for name, path in probes.items():
        typer.echo(f"  probe      {name}: {path}")
    typer.echo(f"  report     {page}")


def build_shards(data: Path, shards: Path, workers: int) -> None:
    """The producer's demo command, in its own process (mtssl never imports the producer's Ray code)."""
    command = [sys.executable, "-m", "pipelines.cli", "demo", "--data", str(data), "--shards", str(shards)]
    result = subprocess.run([*command, "--workers", str(workers)], check=False)
    if result.returncode != 0:
        typer.echo(f"error: building the shard sets failed (exit {result.returncode}): {' '.join(command)}", err=True)
        raise typer.Exit(result.returncode)


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
        typer.echo(f"reusing the finished run in {run} (same options; delete it to train again)")
        return "reused"
    if run.exists():
        typer.echo(f"replacing {run}: it holds an unfinished run or one with other options")
        shutil.rmtree(run)
    typer.echo(f"pretraining {steps} steps of --preset cpu on {shards} into {run}")
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
