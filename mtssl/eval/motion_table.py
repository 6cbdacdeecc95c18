"""The terminal table of ``mtssl-eval motion``: J per sequence and overall, the head beside the flow masks."""

from __future__ import annotations

from typing import Any

COUNT_KEYS = ("frames", "flow_frames", "kept")  # integer columns: printed as they are


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_results(results: dict[str, Any], console: Any, flow: bool = True, errors: Any = None) -> None:
    """The table (fits 80 columns), a one-line legend, the empty sequences and the timings on ``console``
    (stdout); the skipped sources, diagnostics, on ``errors`` (default: stderr). J stays a fraction (mean IoU)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    errors = errors if errors is not None else Console(stderr=True, soft_wrap=True, highlight=False)

    table = Table(
        box=box.SIMPLE,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
        show_edge=False,
    )
    table.add_column("sequence", no_wrap=True, overflow="ellipsis", max_width=18)
    columns = [("frames", "frames"), ("J head", "head_j")]
    if flow:
        columns += [("flow\nframes", "flow_frames"), ("J head\nthose", "head_j_flow_frames")]
        columns += [("J flow\nthose", "flow_j")]
        columns += [("kept", "kept"), ("J head\nkept", "head_j_kept"), ("J flow\nkept", "flow_j_kept")]
    for header, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)

    def add(name: str, row: dict[str, Any], style: str | None = None) -> None:
        cells = [str(row[key]) if key in COUNT_KEYS else _fmt(row[key]) for _, key in columns]
        table.add_row(name, *cells, style=style)

    for name, row in sorted(results["sequences"].items()):
        add(name, row)
    table.add_section()
    add(f"mean of {results['overall']['sequences']}", results["overall"], style="bold")
    console.print(f"Motion head as a segmenter, step {results['step']}, size {results['size']}: J (mean IoU)")
    console.print(table)
    if flow:
        console.print("those: the frames the flow can pair (t±gap); kept: those Pathak's filter keeps")
    if results["empty_sequences"]:
        console.print(f"ground truth empty on every frame (not scored): {', '.join(results['empty_sequences'])}")
    others = sum(reason == "not a video" for reason in results["skipped"].values())
    for source, reason in sorted(results["skipped"].items()):
        if reason != "not a video":
            errors.print(f"skipped {source}: {reason}", markup=False)
    if others:
        errors.print(f"skipped {others} file(s) that are not videos or frames")
    seconds = results["seconds"]
    console.print(
        f"time: {seconds['read']:.1f} s reading, {seconds['head']:.1f} s head"
        + (f", {seconds['flow']:.1f} s flow masks" if flow else "")
    )
