"""The report page: one offline HTML file (inline style, no script) with the PNGs beside it.

Every piece of text that comes from a run (names, paths, config values, probe keys) goes through
:func:`html.escape`; the page links its pictures by bare file name, so the folder can be moved whole.
"""

from __future__ import annotations

import html
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mtssl.eval.percent import percent, percent_spread, points
from mtssl.report import figures, probes
from mtssl.report.runs import Run, ShardSet

PAGE = "index.html"
CONFIG_KEYS = ("tasks", "depth", "width", "input_mode", "lasso", "steps", "shards")

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #bbb; margin-top: 2.2em; }
table { border-collapse: collapse; margin: .6em 0 1em; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; } th { background: #f1f1f1; }
td:first-child, th:first-child { text-align: left; }
tr.best td { background: #fff7d6; } td.pos { background: #dff3df; font-weight: 600; } td.neg { background: #f8dede; }
img { max-width: 100%; border: 1px solid #ddd; } figure { display: inline-block; margin: .5em 1em .5em 0; }
figcaption { font-size: 12px; color: #555; } .missing { color: #9a4d00; } code { background: #f4f4f4; padding: 0 .2em; }
.small { font-size: 12px; color: #555; }
"""


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (run names become PNG name prefixes)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], caption: str = "", row_cls: Sequence[str] = ()) -> str:
    """An HTML table; ``headers`` are escaped here, the cells must already be HTML."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_cls[i]}"' if i < len(row_cls) and row_cls[i] else ""
        body.append(f"<tr{cls}>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>")
    cap = f"<caption>{caption}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def img(name: str, alt: str) -> str:
    return f'<p><img src="{e(name)}" alt="{e(alt)}"></p>'


def missing(text: str) -> str:
    return f'<p class="missing">{text}</p>'


class Assets:
    """The files written beside the page; hands out unique names and copies each source file once."""

    def __init__(self, out: Path) -> None:
        self.out, self.used, self.copied = Path(out), set(), {}

    def name(self, stem: str) -> str:
        name, n = f"{slug(stem)}.png", 1
        while name in self.used:
            n += 1
            name = f"{slug(stem)}-{n}.png"
        self.used.add(name)
        return name

    def copy(self, source: Path, stem: str) -> str:
        key = source.resolve()
        if key not in self.copied:
            self.copied[key] = self.name(stem)
            shutil.copyfile(source, self.out / self.copied[key])
        return self.copied[key]


def write_report(runs: list[Run], out: Path, sweep: dict[str, Any] | None = None) -> Path:
    """Draw every picture into ``out`` and write ``out/index.html``; returns the page. With ``sweep`` (a
    ``sweep.json`` record), runs are grouped over their seeds first (``mtssl.report.sweep``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    assets = Assets(out)
    parts = [_header(runs)]
    if sweep is not None:
        parts.append(sweep_section(runs, sweep, assets))
    if len(runs) > 1:
        parts.append(comparison(runs, assets))
    parts.extend(run_section(run, assets) for run in runs)
    body = "\n".join(parts)
    title = "mtssl report: " + ", ".join(r.name for r in runs)
    page = f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{e(title)}</title>\n'
    page += f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    (out / PAGE).write_text(page, encoding="utf-8")
    return out / PAGE


def _header(runs: list[Run]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M")
    links = ", ".join(f'<a href="#run-{e(slug(r.name))}">{e(r.name)}</a>' for r in runs)
    return f'<h1>mtssl report</h1>\n<p class="small">{len(runs)} run(s): {links}. Written {e(when)}.</p>'


def comparison(runs: list[Run], assets: Assets) -> str:
    """The ablation view: one row per run (steps, best probe per dataset, margin) and a bar chart per dataset."""
    names = probes.datasets(runs)
    headers = ["run", "steps", "tasks", "input", "lasso"]
    headers += [h for d in names for h in (f"{d}: best accuracy", f"{d}: margin over random init")]
    rows = []
    for run in runs:
        row = [f'<a href="#run-{e(slug(run.name))}">{e(run.name)}</a>', e(run.last_step or "—"), *_ablation_keys(run)]
        for dataset in names:
            probe = probes.probe_of(run, dataset)
            acc, where, gap = probes.best(probe) if probe else (None, "", None)
            row += [f"{percent(acc)} <span class='small'>{e(where)}</span>" if probe else "—", _margin_cell(gap)]
        rows.append(row)
    parts = ["<h2>Comparison (ablation view)</h2>", table(headers, rows)]
    if not names:
        parts.append(missing("No run has a probe file: no bar chart (see <code>mtssl-eval probe</code>)."))
    for dataset in names:
        path = figures.ablation_bars(dataset, probes.bar_rows(runs, dataset), out_path(assets, f"ablation-{dataset}"))
        if path:
            parts.append(img(path.name, f"probe accuracy on {dataset} per run and source"))
    return "\n".join(parts)


def sweep_section(runs: list[Run], record: dict[str, Any], assets: Assets) -> str:
    """The sweep view: each run over its seeds (mean ± sd), margins, validation curves, lasso side by side."""
    from mtssl.report import sweep

    found = sweep.groups(runs, record)
    names = probes.datasets(runs)
    headers, rows = sweep.table_rows(found, names)
    parts = ["<h2>Sweep: each run over its seeds</h2>", table(headers, [[e(c) for c in row] for row in rows])]
    for dataset in names:
        values = {g.name: g.values(dataset, "margin") for g in found}
        path = figures.sweep_margins(dataset, values, out_path(assets, f"sweep-margins-{dataset}"))
        if path:
            parts.append(img(path.name, f"margin over random init on {dataset} per run"))
    logs = {g.name: [r.records for r in g.runs] for g in found}
    path = figures.validation_overlay(logs, out_path(assets, "sweep-validation"))
    parts.append(img(path.name, "validation loss per task, every run") if path else missing("No validation curve."))
    last = {g.name: (figures.lasso_records(g.runs[0].records) or [None])[-1] for g in found}
    path = figures.lasso_grid(last, out_path(assets, "sweep-lasso"))
    if path:
        parts.append(img(path.name, "lasso weights of each run, side by side"))
    return "\n".join(parts)


def _ablation_keys(run: Run) -> list[str]:
    """The options an ablation usually varies: tasks, input mode, lasso."""
    config = run.config or {}
    tasks = config.get("tasks")
    shown = "all found" if tasks is None and "tasks" in config else ", ".join(map(str, tasks or [])) or "—"
    return [e(shown), e(config.get("input_mode", "—")), e(config.get("lasso", "—"))]


def out_path(assets: Assets, stem: str) -> Path:
    return assets.out / assets.name(stem)


def run_section(run: Run, assets: Assets) -> str:
    """Everything about one run: options, notes on what is missing, curves, lasso, shard previews, probes."""
    parts = [f'<h2 id="run-{e(slug(run.name))}">Run {e(run.name)}</h2>', f'<p class="small">{e(run.path)}</p>']
    parts.append(config_table(run.config))
    parts.extend(missing(e(note)) for note in run.missing)
    parts.append(curves_block(run, assets))
    parts.append(lasso_block(run, assets))
    parts.append(shards_block(run, assets))
    parts.append(probes_block(run))
    return "\n".join(p for p in parts if p)


def config_table(config: dict[str, Any] | None) -> str:
    if not config:
        return ""
    shown = {k: config.get(k) for k in CONFIG_KEYS if k in config}
    if "tasks" in shown and shown["tasks"] is None:
        shown["tasks"] = "every shard set found"
    rows = [[e(k), e(", ".join(map(str, v)) if isinstance(v, list) else v)] for k, v in shown.items()]
    return table(["option", "value"], rows, caption="Training options (config.json)")


def curves_block(run: Run, assets: Assets) -> str:
    if not run.train:
        return ""
    path = figures.curves(run.records, out_path(assets, f"{run.name}-curves"), f"{run.name}: losses and metrics")
    note = "Solid: training (per-step means over each log window); dashed: validation, where logged."
    return (
        "<h3>Loss and metric curves</h3>\n"
        + (img(path.name, "loss and metric curves") if path else "")
        + (f'<p class="small">{note}</p>')
    )


def lasso_block(run: Run, assets: Assets) -> str:
    rows = figures.lasso_records(run.records)
    if not run.records:
        return ""
    if not rows:
        return "<h3>Lasso weights</h3>\n" + missing("No lasso weights in the log.")
    last = rows[-1]
    heat = figures.lasso_heatmap(last, out_path(assets, f"{run.name}-lasso"), run.name)
    parts = ["<h3>Lasso weights</h3>", img(heat.name, "lasso weights at the end of training")]
    traj = figures.lasso_trajectories(run.records, out_path(assets, f"{run.name}-lasso-trajectories"), run.name)
    if traj:
        parts.append(img(traj.name, "lasso weights over training"))
    else:
        parts.append(missing("Only one record with lasso weights: no trajectory yet."))
    return "\n".join(parts)


def shards_block(run: Run, assets: Assets) -> str:
    if run.config is None:
        return ""
    if not run.shard_sets:
        return "<h3>Shard sets</h3>\n" + missing(f"No shard set found under {e(run.config.get('shards'))}.")
    return "<h3>Shard sets</h3>\n" + "\n".join(_shard_figure(s, assets) for s in run.shard_sets)


def _shard_figure(shard: ShardSet, assets: Assets) -> str:
    if not shard.exists:
        return missing(f"{e(shard.task)}: no shard set at <code>{e(shard.folder)}</code> (no manifest.json).")
    count = f", {shard.samples} samples" if shard.samples is not None else ""
    caption = f"{e(shard.task)}{e(count)}: <code>{e(shard.folder)}</code>"
    if shard.preview is None:
        hint = f"mtssl-data preview {shard.folder} --out {shard.folder / 'preview.png'}"
        return missing(f"{caption}: no preview; draw one with <code>{e(hint)}</code>.")
    name = assets.copy(shard.preview, f"preview-{shard.task}")
    return f'<figure><img src="{e(name)}" alt="{e(shard.task)} preview"><figcaption>{caption}</figcaption></figure>'


def probes_block(run: Run) -> str:
    head = "<h3>Probes</h3>"
    if not run.probes:
        hint = f"mtssl-eval probe --run {run.path} --images DIR"
        return (
            head
            + "\n"
            + missing(f"No probe file (probe-*.json) in this run yet; write one with <code>{e(hint)}</code>.")
        )
    return head + "\n" + "\n".join(probe_table(p.data) if not p.error else _broken(p.path, p.error) for p in run.probes)


def _broken(path: Path, error: str) -> str:
    return missing(f"{e(path.name)} could not be read: {e(error)}")


def probe_table(probe: dict[str, Any]) -> str:
    """One probe file: a row per feature source, trained vs random-init accuracies, the margin highlighted."""
    sources = {k: v for k, v in probe["sources"].items() if isinstance(v, dict)}
    top5 = any("linear_top5" in s for s in sources.values())
    headers = ["source", "dims", "linear", "k-NN", "random linear", "random k-NN", "margin"]
    headers += ["linear top-5", "k-NN top-5", "random linear top-5", "random k-NN top-5"] if top5 else []
    best_source = (probe.get("best") or {}).get("source")
    rows = [_probe_row(s, top5) for s in sources.values()]
    rows = [[e(name)] + row for name, row in zip(sources, rows, strict=True)]
    cls = ["best" if name == best_source else "" for name in sources]
    n_classes = len(probe.get("classes") or [])
    caption = f"{e(probe.get('dataset', '?'))}: n_train {e(probe.get('n_train', '?'))}, "
    caption += f"n_val {e(probe.get('n_val', '?'))}, {n_classes} classes — top-1 accuracy"
    return table(headers, rows, caption, cls) + _best_line(probe)


def _probe_row(source: dict[str, Any], top5: bool) -> list[str]:
    n = probes.number
    row = [e(source.get("dims", "—")), percent(n(source.get("linear"))), percent(n(source.get("knn")))]
    for clf in probes.CLASSIFIERS:
        row.append(percent_spread(n(source.get(f"random_{clf}")), n(source.get(f"random_{clf}_std"))))
    row.append(_margin_cell(probes.margin(source)))
    if top5:
        keys = ("linear_top5", "knn_top5", "random_linear_top5", "random_knn_top5")
        row += [percent(n(source.get(k))) for k in keys]
    return row


def _margin_cell(gap: float | None) -> str:
    if gap is None:
        return "<td>—</td>"
    cls = "pos" if gap >= 0.0005 else "neg" if gap <= -0.0005 else ""  # as shown, to 0.1 point
    return f'<td class="{cls}">{points(gap)}</td>'


def _best_line(probe: dict[str, Any]) -> str:
    block = probe.get("best") or {}
    acc, where, gap = probes.best(probe)
    line = f"<p><b>best</b>: {e(where)} {percent(acc)}"
    random_acc = probes.number(block.get("random_acc"))
    if random_acc is not None:
        line += f"; best random init: {e(block.get('random_source', '?'))} / {e(block.get('random_classifier', '?'))}"
        line += f" {percent(random_acc)}"
    if gap is not None:
        line += f"; margin <b>{points(gap)}</b>"
    at = f" at step {e(probe['step'])}" if probe.get("step") is not None else ""
    line += f'. <span class="small">trunk {e(probe.get("trunk", "?"))}{at}</span>'
    weights = (probe.get("eval_lasso") or {}).get("weights")
    if isinstance(weights, list) and weights:
        shown = ", ".join(f"{w:.2f}" if isinstance(w, int | float) else e(w) for w in weights)
        line += f'<br><span class="small">eval-lasso weights per block-3 unit: {shown}</span>'
    return line + "</p>"
