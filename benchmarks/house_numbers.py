"""The house in numbers: lines per module, the longest functions, and a producer worker's import time.

``.venv/bin/python benchmarks/house_numbers.py [--json OUT]`` prints modules over a line budget, the ten
longest functions, and how long a fresh interpreter takes to import what a Ray build worker imports
(``pipelines.shardjob`` and every recipe), as a ratio against importing only ``numpy`` and ``cv2`` in the same
run (the floor any worker pays), and whether that import pulls in torch or webdataset.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mtssl", "pipelines")
BUDGET = 400
WORKER = "import pipelines.shardjob, pipelines.recipes"
FLOOR = "import numpy, cv2"
PROBE = "; import sys; print(int('torch' in sys.modules), int('webdataset' in sys.modules))"


def modules() -> dict[str, int]:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    return {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in files}


def longest_functions(count: int = 10) -> list[tuple[int, str]]:
    found = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    found.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.name}"))
    return sorted(found, reverse=True)[:count]


def import_seconds(statement: str, repeats: int = 5) -> tuple[float, str]:
    times, probe = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", statement + PROBE], cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        probe = out.stdout.strip() or out.stderr.strip()[-200:]
    return statistics.median(times), probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = modules()
    over = {name: n for name, n in sizes.items() if n > BUDGET}
    funcs = longest_functions()
    floor, _ = import_seconds(FLOOR)
    worker, probe = import_seconds(WORKER)
    torch_loaded, wds_loaded = (int(x) for x in probe.split()) if probe[:1].isdigit() else (-1, -1)
    print(f"{len(sizes)} modules, {sum(sizes.values())} lines; over {BUDGET} lines: {over or 'none'}")
    print("longest functions:", ", ".join(f"{name} ({n})" for n, name in funcs))
    print(
        f"worker import {worker:.2f}s vs numpy+cv2 {floor:.2f}s: ratio {worker / floor:.2f}x; "
        f"imports torch: {bool(torch_loaded)}, webdataset: {bool(wds_loaded)}"
    )
    if args.json:
        record = {
            "modules": len(sizes),
            "lines": sum(sizes.values()),
            "over_budget": over,
            "longest_functions": [[name, n] for n, name in funcs],
            "worker_import_s": round(worker, 3),
            "floor_import_s": round(floor, 3),
            "worker_imports_torch": bool(torch_loaded),
        }
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
