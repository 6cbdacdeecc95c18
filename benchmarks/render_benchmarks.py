"""Regenerate the measured tables of docs/benchmarks.md from the benchmarks' JSON files.

Each generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``
and is rebuilt from ``docs/benchmarks/NAME.json`` (written by the benchmark's ``--json``): the machine,
the commit, the load average, the date and the exact command, then the table. Prose outside the
blocks is left alone; a figure inside one is never edited by hand.

    .venv/bin/python benchmarks/bench_loader.py --json docs/benchmarks/loader.json
    .venv/bin/python benchmarks/bench_build_rate.py --variants imagenet --json docs/benchmarks/build_rate.json
    .venv/bin/python benchmarks/bench_cores_per_gpu.py --loader docs/benchmarks/loader.json \\
        --json docs/benchmarks/cores_per_gpu.json
    .venv/bin/python benchmarks/bench_bucket.py --json docs/benchmarks/bucket.json
    .venv/bin/python benchmarks/render_benchmarks.py            # --check: fail if the page is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOADER_TARGET = 0.7


def provenance(record: dict) -> list[str]:
    machine = record["machine"]
    facts = f"{machine['cpu']}, {machine['nproc']} cores, Python {machine['python']}, OpenCV {machine['opencv']}"
    return [
        f"Measured {record['date']} on {facts}; commit `{record['commit']}`; load average (1/5/15 min) "
        f"{machine['load average (1/5/15 min)']} at the end.",
        "",
        "```bash",
        record["command"],
        "```",
        "",
    ]


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def loader_block(record: dict) -> list[str]:
    rows = []
    for task, r in record["tasks"].items():
        met = min(r["loader_over_limit"], r["loader_over_limit_cpu"]) >= LOADER_TARGET
        rows.append(
            [
                task,
                f"{r['loader_per_s']:.0f} ({r['loader_cpu_per_s']:.0f})",
                f"{r['decode_limit_per_s']:.0f}",
                f"**{r['loader_over_limit']:.2f}** ({r['loader_over_limit_cpu']:.2f})",
                "yes" if met else "no",
                f"{r['fly_per_s']:.0f}",
                f"{r['loader_over_fly']:.1f}x",
                f"{r['loader_jpeg_bytes_cpu_per_s']:.0f}",
                f"{r['bytes_per_sample'] / 1e3:.0f} KB",
            ]
        )
    headers = ["task", "loader /s (/CPU-s)", "decode limit /s", "loader / limit (CPU)", f">= {LOADER_TARGET}"]
    headers += ["on the fly /s", "loader / fly", "JPEG-bytes loader /CPU-s", "stored per sample"]
    return table(headers, rows)


def build_block(record: dict) -> list[str]:
    out = []
    for tree, figures in record["trees"].items():
        rows = [
            [
                task,
                f"{r['decode_per_s']:.0f}",
                f"{r['build_per_s']:.0f}",
                f"**{r['build_over_decode']:.2f}x**",
                f"{r['build_over_decode_cpu']:.2f}x",
                f">= {r['target']:.2f}x",
                "yes" if r["build_over_decode"] >= r["target"] else "no",
                f"{r['bytes_per_sample']:,.0f}",
            ]
            for task, r in figures["tasks"].items()
        ]
        out += [f"*{tree}* tree: {figures['inputs']}.", ""]
        out += table(
            ["task", "decode img/s", "build img/s", "ratio", "ratio (CPU)", "target", "met", "bytes/sample"], rows
        )
        out.append("")
    return out[:-1]


def cores_block(record: dict) -> list[str]:
    modes = ("cpu decode", "JPEG on GPU")
    rows = [
        [task, f"{r['gflop_per_sample']:.1f}", f"{r['gpu_samples_per_s']:.0f}", *(f"{r[m]:.2f}" for m in modes)]
        for task, r in record["tasks"].items()
    ]
    four = record["all_four"]
    rows.append(["**all four**", "", f"{four['gpu_bundles_per_s']} bundles/s", *(f"**{four[m]:.2f}**" for m in modes)])
    head = [f"GPU side: {record['gpu']}. Goal: at most {record['goal']:.0f} cores per GPU for all four.", ""]
    return head + table(["task", "GFLOP/sample", "GPU samples/s", *(f"cores ({m})" for m in modes)], rows)


def pair(r: dict) -> list[str]:
    return [f"{r['disk_per_s']:.0f}", f"{r['bucket_per_s']:.0f}", f"**{r['bucket_over_disk']:.2f}**"]


def bucket_block(record: dict) -> list[str]:
    rows = []
    for task, r in record["loader"].items():
        build = record["build"].get(task)
        rows.append([task, *pair(r), *(pair(build) if build else ["", "", ""])])
    headers = ["task", "loader, disk (samples/s)", "loader, bucket", "bucket / disk"]
    return table([*headers, "build, disk (inputs/s)", "build, bucket", "bucket / disk"], rows)


BLOCKS: dict[str, Callable[[dict], list[str]]] = {"loader": loader_block, "build_rate": build_block}
BLOCKS["cores_per_gpu"] = cores_block
BLOCKS["bucket"] = bucket_block


def render(page: str, folder: Path) -> str:
    for name, block in BLOCKS.items():
        path = folder / f"{name}.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        body = "\n".join(provenance(record) + block(record))
        pattern = re.compile(rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end generated: {name} -->)", re.S)
        page = pattern.sub(lambda m, body=body: m[1] + body + "\n" + m[2], page)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--check", action="store_true", help="exit 1 when the page differs from its JSON files")
    args = parser.parse_args()
    page = args.page.read_text()
    rendered = render(page, args.figures)
    if args.check:
        sys.exit(0 if rendered == page else 1)
    args.page.write_text(rendered)
    print(f"wrote {args.page}")


if __name__ == "__main__":
    main()
