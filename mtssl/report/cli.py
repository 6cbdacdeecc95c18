"""``mtssl-report``: one offline HTML page with the pictures of one or several training runs.

For each run: its options, per-task loss and metric curves (validation dashed), the lasso weights at
the end and over training, a preview of each shard set it read, and its probe tables (``probe-*.json``
from ``mtssl-eval probe``). With two runs or more, a comparison table and a bar chart per probe
dataset come first (the ablation view). Writes ``OUT/index.html`` and PNG files beside it.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from mtssl.cli_style import HelpCommand, fail, make_app
from mtssl.report.runs import NotARunError, Run, load_run

app = make_app()


HELP = (  # rich keeps single line breaks: each paragraph is one line here
    "Write one offline HTML page, OUT/index.html, with PNG files beside it, about the RUN folders given.\n\n"
    "Per run: its options, per-task loss and metric curves (validation dashed), the lasso weights at the end and "
    "over training, a preview of each shard set it read (SET/preview.png), and its probe tables (RUN/probe-*.json "
    "from mtssl-eval probe): accuracies in percent, margins over random init in points.\n\n"
    "With two runs or more, a comparison table and one bar chart per probe dataset come first: the ablation view. "
    "Run names are the folder names.\n\n"
    "Given an mtssl-sweep folder (one that holds sweep.json), the report covers its runs and starts with the sweep "
    "view: each run over its seeds (mean ± sd of the best accuracy and of the margin), a margin bar chart with each "
    "seed's dot, every run's validation loss per task overlaid, the lasso matrices side by side, the wall times."
)


@app.command(cls=HelpCommand, help=HELP)
def main(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, as mtssl-train writes them (log.jsonl and/or config.json); one or more.",
            metavar="RUN",
            file_okay=False,
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for index.html and its PNG files.", file_okay=False)
    ] = Path("report"),
) -> None:
    """The page about ``runs`` (the command's help is :data:`HELP`)."""
    from mtssl.report.sweep import is_sweep, read_record, sweep_run_folders

    sweeps = [p for p in runs if is_sweep(p)]
    if sweeps and len(runs) > 1:
        raise fail("give one mtssl-sweep folder, or run folders; not both")
    try:
        loaded = load_runs(sweep_run_folders(sweeps[0]) if sweeps else runs)
    except NotARunError as exc:
        raise fail(str(exc)) from exc
    if not loaded:
        raise fail(f"{sweeps[0]}: the sweep has no run folder with a config.json yet")
    from mtssl.report.page import write_report  # matplotlib and torch only once the arguments are good

    page = write_report(loaded, out, read_record(sweeps[0]) if sweeps else None)
    typer.echo(f"wrote {page} ({len(loaded)} run{'s' if len(loaded) > 1 else ''})")


def load_runs(paths: list[Path]) -> list[Run]:
    """Load every run; folders that share a name are told apart by their parent folder, then by a number."""
    names = [p.resolve().name for p in paths]
    clashes = Counter(names)
    names = [f"{p.resolve().parent.name}/{n}" if clashes[n] > 1 else n for p, n in zip(paths, names, strict=True)]
    seen: Counter[str] = Counter()
    unique = []
    for n in names:
        seen[n] += 1
        unique.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return [load_run(p, name) for p, name in zip(paths, unique, strict=True)]


if __name__ == "__main__":
    sys.exit(app())
