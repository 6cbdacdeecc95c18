"""mtssl-report on fake run folders: a well-formed offline page, valid PNGs, the ablation view only for 2+ runs."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mtssl.report.cli import app

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}


class Page(HTMLParser):
    """Collects <img src>, ids and headings, and checks that every non-void tag is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attrs_d = dict(attrs)
        if tag == "img":
            self.images.append(attrs_d["src"] or "")
        if tag in ("script", "link"):
            self.errors.append(f"<{tag}> in an offline page")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def render(runs: list[Path], out: Path) -> tuple[Page, str]:
    result = CliRunner().invoke(app, [*map(str, runs), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {out / 'index.html'} ({len(runs)} run{'s' if len(runs) > 1 else ''})\n"
    assert result.stderr == ""
    source = (out / "index.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(source)
    page.close()
    assert not page.errors, page.errors
    assert not page.stack, f"unclosed tags {page.stack}"
    return page, source


def assert_pngs(out: Path, page: Page) -> None:
    for src in page.images:
        assert "/" not in src and (out / src).is_file(), src
    pngs = sorted(out.glob("*.png"))
    assert pngs and {p.name for p in pngs} == set(page.images)
    for png in pngs:
        assert png.stat().st_size > 0 and png.read_bytes()[:8] == PNG_SIGNATURE, png
        with Image.open(png) as im:
            im.load()
            assert im.width > 0 and im.height > 0


@pytest.fixture(scope="module")
def two_run_report(two_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Page, str]:
    out = tmp_path_factory.mktemp("report2")
    return (out, *render(two_runs, out))


def test_single_run_page(two_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    page, source = render(two_runs[:1], out)
    assert_pngs(out, page)
    names = set(page.images)
    assert {"full-curves.png", "full-lasso.png", "full-lasso-trajectories.png", "preview-relpos.png"} <= names
    assert not any(n.startswith("ablation") for n in names)
    assert "Comparison" not in source
    text = " ".join(page.text)
    assert "no preview" in text and "mtssl-data preview" in text  # the color set has none
    assert "flowers5" in text and "n_train 200" in text and "5 classes" in text
    assert "52.0 ± 2.0%" in text and "+18.0 points" in text  # random mean ± std, margin 0.70 - 0.52
    best = "<b>best</b>: block1 / linear 70.0%; best random init: block1 / linear 52.0%; margin <b>+18.0 points</b>"
    assert best in source
    for key in ("depth", "width", "input_mode", "lasso", "steps", "every shard set found"):
        assert key in text


def test_two_runs_comparison(two_run_report: tuple[Path, Page, str]) -> None:
    out, page, source = two_run_report
    assert_pngs(out, page)
    assert "Comparison (ablation view)" in source
    assert "ablation-flowers5.png" in page.images
    assert "No probe file" in " ".join(page.text)  # the second run has none
    assert {"full-curves.png", "noprobe-curves.png"} <= set(page.images)
    assert page.images.count("preview-relpos.png") == 2  # one copy of a preview shared by both runs
    assert len(list(out.glob("preview-*.png"))) == 1


def test_missing_pieces_do_not_crash(run_factory, tmp_path: Path) -> None:
    short = run_factory("short", steps=1, probe_acc=None, val=False)
    nolasso = run_factory("nolasso", steps=3, lasso=False)
    fresh = tmp_path / "fresh"  # training just started: config only
    fresh.mkdir()
    (fresh / "config.json").write_text((short / "config.json").read_text())
    broken = run_factory("broken", steps=2)
    (broken / "probe-bad.json").write_text("{not json")
    (broken / "log.jsonl").write_text((broken / "log.jsonl").read_text() + '{"step": 3, "lo')  # torn last line
    out = tmp_path / "report"
    page, _ = render([short, nolasso, fresh, broken], out)
    assert_pngs(out, page)
    text = " ".join(page.text)
    assert "no trajectory" in text and "No lasso weights" in text and "no log.jsonl yet" in text
    assert "probe-bad.json could not be read" in text


def test_html_escaping(run_factory, tmp_path: Path) -> None:
    run = run_factory("esc", steps=2)
    probe = json.loads((run / "probe-flowers5.json").read_text())
    probe["dataset"] = "<script>x</script>"
    (run / "probe-flowers5.json").write_text(json.dumps(probe))
    _, source = render([run], tmp_path / "report")
    assert "<script>" not in source and "&lt;script&gt;" in source


def test_not_a_run_exits_2(two_runs: list[Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [str(two_runs[0]), str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "is not a run folder" in result.stderr
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_help_reads_well() -> None:
    result = CliRunner().invoke(app, ["-h"], terminal_width=120)
    assert result.exit_code == 0
    assert "RUN..." in result.output and "--out" in result.output and "-o" in result.output
    assert "ablation" in result.output and "[default: report]" in result.output
    assert "<" not in result.output and "list[" not in result.output  # words, not Python type names


def test_no_run_is_one_error_line() -> None:
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: Missing argument 'RUN'") and len(result.stderr.splitlines()) == 1


def test_numbers_are_shown_as_percentages_and_points() -> None:
    from mtssl.eval.percent import percent, percent_spread, points

    assert (percent(0.2), percent(1.0), percent(None), percent(None, missing="-")) == ("20.0%", "100.0%", "—", "-")
    assert (percent_spread(0.52, 0.02), percent_spread(0.52, None)) == ("52.0 ± 2.0%", "52.0%")
    assert (points(0.06), points(-0.0125), points(None)) == ("+6.0 points", "-1.2 points", "—")
