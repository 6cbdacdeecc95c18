"""The producer's two consoles, and a rich progress bar with count, rate and ETA shared by the long commands.

What a command reports (a build's summary, ``info``'s table, ``verify``'s verdict) goes to ``stdout_console``,
so ``mtssl-data info SET > info.txt`` keeps it; progress bars, warnings and notes go to ``console``, on stderr.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)  # progress and diagnostics
stdout_console = Console()  # results


class RateColumn(TextColumn):
    """Items per second, with the unit named by the task's ``unit`` field."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        return f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s"


def make_progress(disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=False,
    )
