from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.build import build
from pipelines.errors import Reject
from pipelines.imageio import load_rgb
from pipelines.recipes.color import ColorRecipeConfig
from pipelines.recipes.relpos import RelposRecipeConfig
from pipelines.sources import display_name, list_image_tree, name_problem

from .conftest import EXPECTED, NAME_REASONS


def test_listing_ends_despite_loops_and_lists_hidden_and_badly_named_files(bad_corpus):
    listed = [s.relpath for s in list_image_tree(bad_corpus)]
    assert sorted(map(display_name, listed)) == sorted(EXPECTED)
    assert {display_name(p): name_problem(p)[0] for p in listed if name_problem(p)} == {
        name: reason for name, reason in EXPECTED.items() if reason in NAME_REASONS
    }


@pytest.mark.parametrize("name", sorted(n for n, r in EXPECTED.items() if r not in NAME_REASONS))
def test_each_input_loads_or_gets_its_reason(bad_corpus, name):
    expected = EXPECTED[name]
    if expected is None:
        image = load_rgb(bad_corpus / name, min_side=64)
        assert image.rgb.dtype == np.uint8 and image.rgb.ndim == 3 and image.rgb.shape[2] == 3
        assert image.rgb.std() > 5  # real content, not a blank decode
    else:
        with pytest.raises(Reject) as info:
            load_rgb(bad_corpus / name, max_pixels=50_000_000, min_side=64)
        assert info.value.reason == expected


def test_conversions_keep_the_picture(bad_corpus):
    reference = load_rgb(bad_corpus / "ok/photo.jpg").rgb.astype(float)
    gray_reference = reference.mean(axis=2)
    assert np.abs(load_rgb(bad_corpus / "ok/cmyk.jpg").rgb - reference).mean() < 12
    assert np.abs(load_rgb(bad_corpus / "ok/rgb16.png").rgb - reference).mean() < 3
    deep = load_rgb(bad_corpus / "ok/deep16.png")
    assert deep.source_mode.startswith("I") and np.abs(deep.rgb[..., 0] - gray_reference).mean() < 12
    alpha = load_rgb(bad_corpus / "ok/alpha.png").rgb.astype(float)  # composited on white at 50%
    assert np.abs(alpha - (reference * 0.5 + 127.5)).mean() < 3
    rotated = load_rgb(bad_corpus / "ok/rotated_exif.jpg")
    assert rotated.rgb.shape[:2] == (420, 300)  # EXIF orientation applied


@pytest.mark.parametrize(
    "task,config", [("color", ColorRecipeConfig(min_source_side=64)), ("relpos", RelposRecipeConfig())]
)
def test_build_accounts_for_every_input(bad_corpus, tmp_path, task, config):
    out = tmp_path / task
    report = build(
        task, bad_corpus, out, config, workers=0, samples_per_shard=5, max_pixels=50_000_000, show_progress=False
    )
    index = pq.read_table(out / "index.parquet").to_pylist()
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert len(index) + len(rejects) == len(EXPECTED) == report.manifest["source"]["inputs"]
    assert {r["source"] for r in index} | {r["source"] for r in rejects} == set(EXPECTED)
    reasons = {r["source"]: r["reason"] for r in rejects}
    for name, reason in EXPECTED.items():
        if reason is not None:
            assert reasons[name] == reason, name
    if task == "color":
        assert not any(r["reason"] == "internal error" for r in rejects)
        assert {r["source"] for r in index} == {n for n, r in EXPECTED.items() if r is None}
        grayscale = {r["source"]: '"grayscale":true' in r["params"] for r in index}
        assert grayscale["ok/gray.jpg"] and grayscale["ok/deep16.png"] and not grayscale["ok/photo.jpg"]
    else:  # 300x400 sources are large enough for the grid after upscaling
        assert reasons.get("ok/photo.jpg") is None
    assert report.manifest["totals"]["rejected"] == len(rejects)


def test_empty_tree_is_a_clear_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no input files"):
        build("color", tmp_path / "empty", tmp_path / "out", ColorRecipeConfig(), workers=0, show_progress=False)
