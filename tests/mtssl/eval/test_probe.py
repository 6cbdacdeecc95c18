"""``mtssl-eval probe`` end to end, its feature sources and random-init baselines, and its feature cache."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import sklearn.linear_model  # noqa: F401  (loaded before the thread limit below, so that its BLAS is limited too)
import torch
from typer.testing import CliRunner

from mtssl.eval.classifiers import Scores, mix
from mtssl.eval.cli import app
from mtssl.eval.features import (
    FeatureSet,
    cache_key,
    cached,
    extract_features,
    random_trunk,
    recalibrate_norms,
    unit_subset,
)
from mtssl.eval.probe import EVAL_ROW, ProbeOptions, Split, best_of, load_split, probe_sources, run_probe, summarise
from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.model.loading import load_trunk
from mtssl.tasks import ColorHeadConfig, RelposHeadConfig
from mtssl.train.checkpoint import export_trunk

SOURCES = {"block1", "block2", "unit1", "unit2", "lasso_relpos", "lasso_color", EVAL_ROW}
ROW_KEYS = {"linear", "knn", "random_linear", "random_knn", "random_linear_std", "random_knn_std", "dims"}
TINY_TASKS = {
    "relpos": RelposHeadConfig(patch_channels=8, patch_dim=32, pair_dims=(32,)),
    "color": ColorHeadConfig(hidden=32),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_export(run: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = MultiTaskNet(NetworkConfig(tasks=("relpos", "color"), depth=18, width=4), TINY_TASKS)
    run.mkdir(parents=True, exist_ok=True)
    return export_trunk(run, net, json.dumps(net.resolved_config()), step=5)


def write_folder(root: Path, per_class: int = 8) -> Path:
    """Three classes of 48 x 48 JPEGs that differ in brightness and layout, and one corrupt ``bad.jpg``."""
    ramp = np.linspace(0, 255, 48)
    for i in range(per_class):
        shade = 10 * i
        images = {
            "dark": np.full((48, 48), 20 + shade),
            "sky": np.tile(ramp[:, None], (1, 48)) * 0.5 + shade,  # vertical gradient
            "wall": np.tile(ramp[None, :], (48, 1)) * 0.3 + 150 + shade,  # horizontal gradient, bright
        }
        for name, gray in images.items():
            bgr = np.stack([gray, gray * 0.8, gray * 0.6], axis=-1).clip(0, 255).astype(np.uint8)
            (root / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name / f"{i}.jpg"), bgr)
    (root / "sky" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage, not a JPEG " * 8)
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("probe")
    run = root / "run"
    trunk = tiny_export(run, seed=123)  # not a seed of the random-init baselines
    folder = write_folder(root / "shapes")
    return SimpleNamespace(root=root, run=run, trunk=trunk, folder=folder, cache=root / "cache")


def probe_args(env: SimpleNamespace, out: Path, **extra: str) -> list[str]:
    args = ["probe", "--run", str(env.run), "--images", str(env.folder), "--size", "32", "--random-seeds", "2"]
    args += ["--cache-dir", str(env.cache), "--json", str(out)]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", value]
    return args


def options_of(env: SimpleNamespace, **changes) -> ProbeOptions:
    """The options the CLI run used, for run_probe (quiet, no extra JSON)."""
    base = ProbeOptions(run=env.run, images=env.folder, size=32, random_seeds=2, cache_dir=env.cache, quiet=True)
    return replace(base, **changes)


@pytest.fixture(scope="module")
def cli_run(env: SimpleNamespace) -> SimpleNamespace:
    """One ``mtssl-eval probe`` run through the CLI, shared by the tests that read its outputs."""
    out = env.root / "out" / "probe.json"
    result = CliRunner().invoke(app, probe_args(env, out))
    assert result.exit_code == 0, (result.output, result.exception)
    return SimpleNamespace(result=result, out=out, json=json.loads(out.read_text()))


# ---- end to end --------------------------------------------------------------------------------------------


def test_probe_cli_writes_the_documented_json(env, cli_run):
    data = cli_run.json
    assert data["dataset"] == "shapes"
    assert data["classes"] == ["dark", "sky", "wall"]
    assert data["n_train"] + data["n_val"] == 24  # 25 files, one corrupt
    assert data["n_train"] == 12
    assert data["step"] == 5
    assert data["network"] == {"depth": 18, "width": 4, "input_mode": "harmonized", "lasso": True}
    bad = str(env.folder / "sky" / "bad.jpg")
    assert list(data["skipped"]) == [bad]
    assert "decod" in data["skipped"][bad]

    assert set(data["sources"]) == SOURCES
    for name, row in data["sources"].items():
        assert set(row) >= ROW_KEYS, name
        assert not any("top5" in key for key in row)  # 3 classes: no top-5
        assert isinstance(row["dims"], int) and row["dims"] > 0
        for key in ("linear", "knn", "random_linear", "random_knn"):
            assert 0.0 <= row[key] <= 1.0
        for key in ("linear", "knn"):  # a share of the validation images (the random rows are means of 2)
            assert round(row[key] * data["n_val"]) == pytest.approx(row[key] * data["n_val"], abs=0.01)
        assert 0.0 <= row["random_linear_std"] <= 0.5 and 0.0 <= row["random_knn_std"] <= 0.5
    # every source is pooled to about --feature-dims values, whatever its channels
    assert all(16 <= row["dims"] <= 2048 for row in data["sources"].values())

    best = data["best"]
    assert {"source", "classifier", "acc", "random_source", "random_classifier", "random_acc", "margin"} <= set(best)
    assert best["acc"] == max(row[c] for row in data["sources"].values() for c in ("linear", "knn"))
    assert best["acc"] == data["sources"][best["source"]][best["classifier"]]
    assert best["random_acc"] == max(row[f"random_{c}"] for row in data["sources"].values() for c in ("linear", "knn"))
    assert best["margin"] == pytest.approx(best["acc"] - best["random_acc"], abs=1e-4)

    assert len(data["eval_lasso"]["weights"]) == 2  # one alpha per block-3 unit of the depth-18 trunk
    assert data["timing"]["features_cached"] is False
    assert data["timing"]["extract_images_per_s"] > 0

    beside = env.run / "probe-shapes.json"
    assert json.loads(beside.read_text()) == data
    assert "eval_lasso" in cli_run.result.stdout and "margin" in cli_run.result.stdout
    assert not (env.run / "tensorboard").exists()  # a run without a tensorboard folder gets none


def test_the_probe_prints_percentages_on_stdout_and_skips_on_stderr(env, cli_run):
    """Accuracies shown to people are percentages (the JSON keeps fractions), the margin is in points; the
    results and the files written go to stdout, the skipped files to stderr."""
    out, err, best = cli_run.result.stdout, cli_run.result.stderr, cli_run.json["best"]
    assert "top-1 accuracy" in out
    row = cli_run.json["sources"]["block1"]
    assert f"{100 * row['linear']:.1f}%" in out and f"{100 * row['knn']:.1f}%" in out
    assert f"{100 * row['random_linear']:.1f} ± {100 * row['random_linear_std']:.1f}%" in out
    assert f"{best['source']} {best['classifier']} {100 * best['acc']:.1f}%;" in out
    assert f"margin {100 * best['margin']:+.1f} points" in out
    assert f"wrote {cli_run.out}" in out and f"wrote {env.run / 'probe-shapes.json'}" in out
    assert "skipped" not in out and "skipped 1 file: " in err
    assert "wrote" not in err and "Traceback" not in err


def run_with_tensorboard(env: SimpleNamespace, tmp_path: Path) -> Path:
    """A copy of the probed run with the ``tensorboard/`` folder ``mtssl-train --tensorboard`` makes."""
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    shutil.copy(env.trunk, run / "trunk.pt")
    return run


def test_the_probe_adds_its_scores_to_the_runs_tensorboard(env, cli_run, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = run_with_tensorboard(env, tmp_path)
    result = run_probe(options_of(env, run=run))  # the features are cached by cli_run: classifiers only
    assert json.loads((run / "probe-shapes.json").read_text())["sources"] == cli_run.json["sources"]
    assert result["tensorboard"]["folder"] == str(run / "tensorboard") and result["tensorboard"]["step"] == 5
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    sources = cli_run.json["sources"]
    for name in sources:
        for key in ("linear", "knn", "random_linear", "random_knn"):
            assert f"probe/shapes/{key}/{name}" in tags
        assert f"probe/shapes/margin/{name}" in tags
    assert {"probe/shapes/best/acc", "probe/shapes/best/random_acc", "probe/shapes/best/margin"} <= tags
    assert len(tags) == result["tensorboard"]["scalars"] == 5 * len(sources) + 3
    (linear,) = events.Scalars("probe/shapes/linear/block1")
    assert linear.step == 5 and linear.value == pytest.approx(sources["block1"]["linear"])  # a fraction, as the JSON
    (margin,) = events.Scalars("probe/shapes/best/margin")
    assert margin.step == 5 and margin.value == pytest.approx(cli_run.json["best"]["margin"])
    block1 = sources["block1"]
    expected = max(block1["linear"], block1["knn"]) - max(block1["random_linear"], block1["random_knn"])
    assert events.Scalars("probe/shapes/margin/block1")[0].value == pytest.approx(expected, abs=1e-4)


def test_without_the_tensorboard_package_the_probe_says_so_once_and_writes_its_json(
    env, cli_run, tmp_path, monkeypatch, capsys
):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    run = run_with_tensorboard(env, tmp_path)
    result = run_probe(options_of(env, run=run, quiet=False))
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "tensorboard" in line]
    assert len(notes) == 1 and notes[0].startswith("note: the tensorboard package is not installed"), captured.err
    assert "scalars" not in captured.out and "note:" not in captured.out
    assert result["tensorboard"] is None and not any((run / "tensorboard").iterdir())
    assert (run / "probe-shapes.json").is_file()


def test_the_cache_files_hold_plain_arrays(env, cli_run):
    files = sorted(env.cache.glob("*.npz"))
    assert len(files) == 3  # the trunk and 2 random-init trunks
    for path in files:
        with np.load(path, allow_pickle=False) as arrays:
            names = set(arrays.files)
            assert {"train:candidates", "val:candidates"} <= names
            assert {f"train:src:{s}" for s in SOURCES - {EVAL_ROW}} <= names
            for name in arrays.files:
                assert arrays[name].dtype == np.float32
            assert arrays["train:candidates"].shape[:2] == (2, 12)
    assert not list(env.cache.glob(".*tmp*"))


def test_a_second_probe_reads_the_cache_and_scores_the_same(env, cli_run):
    again = run_probe(options_of(env))
    assert again["timing"]["features_cached"] is True
    assert again["timing"]["extract_images_per_s"] is None
    assert json.loads(json.dumps(again["sources"])) == cli_run.json["sources"]
    assert again["eval_lasso"] == cli_run.json["eval_lasso"]
    assert again["best"] == cli_run.json["best"]


def test_damaged_cache_files_are_recomputed(env, cli_run, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(env.cache, cache)
    files = sorted(cache.glob("*.npz"))
    for index, path in enumerate(files):  # truncated, emptied, overwritten with garbage
        raw = path.read_bytes()
        path.write_bytes([raw[: len(raw) // 2], b"", b"garbage" * 100][index % 3])
    again = run_probe(options_of(env, cache_dir=cache))
    assert again["timing"]["features_cached"] is False
    assert json.loads(json.dumps(again["sources"])) == cli_run.json["sources"]
    assert sorted(cache.glob("*.npz")) == files
    for path in files:  # rewritten whole
        with np.load(path, allow_pickle=False) as arrays:
            assert "train:candidates" in arrays.files


def test_the_random_baselines_are_cached_per_batch_size(env, cli_run, tmp_path):
    """The norms of a random trunk are recalibrated with batch statistics, so another --batch-size is another
    baseline: it must not be read from an entry computed with the first one."""
    cache = tmp_path / "cache"
    shutil.copytree(env.cache, cache)
    again = run_probe(options_of(env, cache_dir=cache, batch_size=5, random_seeds=1))
    assert again["timing"]["features_cached"] is True  # a frozen trunk in eval mode: batch size is irrelevant
    assert len(list(cache.glob("*.npz"))) == 4  # one new random-init entry


def test_changing_one_image_changes_the_data_hash(env, tmp_path):
    folder = tmp_path / "shapes"
    shutil.copytree(env.folder, folder)
    options = ProbeOptions(images=folder, size=32)
    first = load_split(options)
    assert load_split(options).hash == first.hash
    target = folder / "dark" / "3.jpg"
    image = cv2.imread(str(target))
    image[:8, :8] = 255
    cv2.imwrite(str(target), image)
    second = load_split(options)
    assert second.hash != first.hash
    key = cache_key("trunk", "same trunk", first.hash, 32, 2048)
    assert cache_key("trunk", "same trunk", second.hash, 32, 2048) != key  # so a cache miss


def test_images_are_not_upscaled_unless_asked(env, tmp_path):
    """No --size: 224, or the train images' median shorter side where smaller; --size always wins."""
    small = load_split(ProbeOptions(images=env.folder))  # 48 x 48 JPEGs
    assert small.size == 48 and small.train_images.shape[1:] == (48, 48, 3)
    assert load_split(ProbeOptions(images=env.folder, size=64)).train_images.shape[1:] == (64, 64, 3)
    large = tmp_path / "large"
    for name, value in (("a", 40), ("b", 200)):
        (large / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(large / name / f"{i}.jpg"), np.full((300, 400, 3), value + i, np.uint8))
    assert load_split(ProbeOptions(images=large)).size == 224
    result = run_probe(options_of(env, size=None, cache_dir=tmp_path / "cache", random_seeds=1))
    assert result["size"] == 48


@pytest.mark.parametrize(
    "case",
    [
        "neither-run-nor-trunk",
        "both",
        "no-trunk-file",
        "no-folder",
        "one-class",
        "one-class-decodes",
        "train-without-val",
        "no-images",
    ],
)
def test_probe_errors_exit_2_with_one_line(env, tmp_path, case):
    one_class = tmp_path / "single"
    (one_class / "only").mkdir(parents=True)
    shutil.copy(env.folder / "dark" / "0.jpg", one_class / "only" / "0.jpg")
    one_decodes = tmp_path / "broken"  # two class folders, but every file of one of them is corrupt
    for i in range(4):
        (one_decodes / "good").mkdir(parents=True, exist_ok=True)
        shutil.copy(env.folder / "dark" / f"{i}.jpg", one_decodes / "good" / f"{i}.jpg")
        (one_decodes / "bad").mkdir(exist_ok=True)
        (one_decodes / "bad" / f"{i}.jpg").write_bytes(b"corrupt")
    run, images = ["--run", str(env.run)], ["--images", str(env.folder)]
    args = {
        "neither-run-nor-trunk": images,
        "both": run + ["--trunk", str(env.trunk)] + images,
        "no-trunk-file": ["--trunk", str(tmp_path / "missing.pt")] + images,
        "no-folder": run + ["--images", str(tmp_path / "missing")],
        "one-class": run + ["--images", str(one_class)],
        "one-class-decodes": run + ["--images", str(one_decodes)],
        "train-without-val": run + ["--train", str(env.folder)],
        "no-images": run,
    }[case]
    result = CliRunner().invoke(app, ["probe", *args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in result.output
    assert not (tmp_path / "cache").exists()  # refused before any feature was computed


# ---- sources and baselines ---------------------------------------------------------------------------------


def test_random_trunks_have_the_trained_shape_and_seeded_values(env):
    loaded = load_trunk(env.trunk)
    first, again, other = (random_trunk(loaded.network, loaded.rows, seed) for seed in (0, 0, 1))
    assert first.rows == loaded.rows and first.network == loaded.network
    for part in ("trunk", "lasso"):
        trained = getattr(loaded, part).state_dict()
        random = getattr(first, part).state_dict()
        assert random.keys() == trained.keys()
        assert {k: v.shape for k, v in random.items()} == {k: v.shape for k, v in trained.items()}
    weights = [m.trunk.conv1.weight for m in (first, again, other)]
    assert torch.equal(weights[0], weights[1])
    assert not torch.allclose(weights[0], weights[2])
    assert not torch.allclose(weights[0], loaded.trunk.conv1.weight)


@pytest.mark.parametrize("batch_size", [10, 4])  # one batch; and 4 + 4 + 2, a short last batch
def test_recalibrated_norms_carry_the_datas_statistics(env, batch_size):
    loaded = load_trunk(env.trunk)
    rand = random_trunk(loaded.network, loaded.rows, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    images[8:] = 255  # a bright last batch: equal weights per batch would pull the mean towards it
    recalibrate_norms(rand, images, batch_size=batch_size)
    with torch.no_grad():
        stem = rand.trunk.stem(rand.prepare(torch.from_numpy(images).permute(0, 3, 1, 2)))
    first = rand.trunk.block1[0].preact  # the first BN reads the stem's output
    assert not first.training
    torch.testing.assert_close(first.running_mean, stem.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-3)
    if batch_size >= len(images):
        torch.testing.assert_close(first.running_var, stem.var(dim=(0, 2, 3)), rtol=1e-4, atol=1e-3)
    for norm in rand.lasso.norms:  # the lasso's normalisations were re-estimated too
        assert not norm.training
        assert not torch.allclose(norm.running_mean, torch.zeros_like(norm.running_mean))
    dark = random_trunk(loaded.network, loaded.rows, seed=0)
    recalibrate_norms(dark, images // 4, batch_size=batch_size)
    assert not torch.allclose(dark.trunk.block1[0].preact.running_mean, first.running_mean)


def test_features_hold_every_documented_source(env):
    loaded = load_trunk(env.trunk)
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    features = extract_features(loaded, images, dims=256, batch_size=2)
    assert set(features.sources) == SOURCES - {EVAL_ROW}
    assert all(value.shape[0] == 5 and value.dtype == np.float32 for value in features.sources.values())
    assert features.candidates.shape[:2] == (2, 5)
    # average pooling is linear: each task's lasso source is its alpha's mix of the pooled candidates
    for row, alpha in zip(loaded.rows, loaded.lasso.weights().numpy(), strict=True):
        np.testing.assert_allclose(features.sources[f"lasso_{row}"], mix(features.candidates, alpha), atol=1e-4)
    again = extract_features(loaded, images, dims=256, batch_size=5)  # eval mode: batching changes nothing
    for name, value in features.sources.items():
        np.testing.assert_allclose(again.sources[name], value, rtol=1e-4, atol=1e-3)
    assert unit_subset(2) == [0, 1]
    assert unit_subset(23) == [0, 4, 9, 13, 18, 22]


def test_a_trunk_without_lasso_reads_the_last_unit_and_has_no_eval_row(env):
    loaded = load_trunk(env.trunk)
    rand = random_trunk(replace(loaded.network, lasso=False), loaded.rows, seed=2)
    images = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    recalibrate_norms(rand, images, batch_size=4)
    features = extract_features(rand, images, dims=256)
    assert features.candidates is None
    np.testing.assert_array_equal(features.sources["lasso_relpos"], features.sources["lasso_color"])
    labels = np.arange(6) % 2
    data = Split(images, labels, images, labels, ("a", "b"), "x", "h", {})
    out = probe_sources({"train": features, "val": features}, data, ProbeOptions())
    assert EVAL_ROW not in out and "_alpha" not in out
    assert set(out) == SOURCES - {EVAL_ROW}


# ---- the feature cache -----------------------------------------------------------------------------------


def feature_sets(seed: int = 0) -> dict[str, FeatureSet]:
    rng = np.random.default_rng(seed)
    train = FeatureSet({"block1": rng.normal(size=(4, 6)).astype(np.float32)}, rng.normal(size=(2, 4, 6)))
    val = FeatureSet({"block1": rng.normal(size=(3, 6)).astype(np.float32)}, rng.normal(size=(2, 3, 6)))
    return {"train": train, "val": val}


def assert_same_features(a: dict[str, FeatureSet], b: dict[str, FeatureSet]) -> None:
    assert a.keys() == b.keys()
    for split in a:
        assert a[split].sources.keys() == b[split].sources.keys()
        for name in a[split].sources:
            np.testing.assert_array_equal(a[split].sources[name], b[split].sources[name])
        np.testing.assert_array_equal(a[split].candidates, b[split].candidates)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "not-npz"])
def test_a_damaged_cache_entry_is_recomputed_not_crashed_on(tmp_path, damage):
    calls = []

    def compute():
        calls.append(1)
        return feature_sets()

    first, hit = cached(tmp_path, "key", compute)
    assert hit is False and len(calls) == 1
    second, hit = cached(tmp_path, "key", compute)
    assert hit is True and len(calls) == 1
    assert_same_features(first, second)
    path = tmp_path / "key.npz"
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "garbage": b"\x00junk" * 50}.get(damage, b""))
    if damage == "not-npz":
        np.save(path.with_suffix(".tmp.npy"), np.zeros(3))
        path.write_bytes(path.with_suffix(".tmp.npy").read_bytes())  # a .npy where a .npz belongs
    third, hit = cached(tmp_path, "key", compute)
    assert hit is False and len(calls) == 2
    assert_same_features(first, third)
    fourth, hit = cached(tmp_path, "key", compute)
    assert hit is True and len(calls) == 2


def test_an_object_array_cannot_reach_the_cache(tmp_path):
    """Nothing is pickled: the entries are read with allow_pickle=False, so a pickled entry is a miss."""
    path = tmp_path / "key.npz"
    np.savez(path, **{"train:src:block1": np.array([{"evil": 1}], dtype=object)})
    features, hit = cached(tmp_path, "key", feature_sets)
    assert hit is False
    assert_same_features(features, feature_sets())


# ---- results ----------------------------------------------------------------------------------------------


def fake_split(classes: int) -> Split:
    names = tuple(f"c{i}" for i in range(classes))
    labels = np.arange(2 * classes) % classes
    empty = np.zeros((2 * classes, 4, 4, 3), np.uint8)
    return Split(empty, labels, empty, labels, names, "fake", "hash", {})


@pytest.mark.parametrize("classes", [5, 6])
def test_top5_is_reported_only_with_more_than_5_classes(classes):
    many = classes > 5
    top5 = 0.9 if many else None
    scores = {"block1": {"linear": Scores(0.5, top5, 0.1), "knn": Scores(0.4, top5, 20.0), "dims": 8}}
    baselines = [
        {"block1": {"linear": Scores(a, top5 and a + 0.2, 0.1), "knn": Scores(a, top5 and a + 0.1, 20.0), "dims": 8}}
        for a in (0.2, 0.3)
    ]
    loaded = SimpleNamespace(step=3, network=NetworkConfig(tasks=("color",), depth=18, width=4))
    result = summarise(scores, baselines, fake_split(classes), ProbeOptions(), Path("trunk.pt"), loaded)
    row = result["sources"]["block1"]
    assert row["random_linear"] == 0.25 and row["random_linear_std"] == 0.05
    top5_keys = {"linear_top5", "knn_top5", "random_linear_top5", "random_knn_top5"}
    if many:
        assert top5_keys <= set(row)
        assert row["linear_top5"] == 0.9 and row["random_linear_top5"] == pytest.approx(0.45)
    else:
        assert not any("top5" in key for key in row)
    assert result["best"]["margin"] == pytest.approx(0.5 - 0.25)


def test_best_of_without_baselines_has_no_margin():
    sources = {"a": {"linear": 0.6, "knn": 0.7, "random_linear": None, "random_knn": None}}
    assert best_of(sources) == {"source": "a", "classifier": "knn", "acc": 0.7}
    assert best_of({}) == {}


def test_an_eval_lasso_row_pruned_to_zero_still_scores():
    """A huge --eval-l1 sets every alpha to zero: the row is then a constant feature, scored, not a crash."""
    rng = np.random.default_rng(0)
    data = fake_split(3)
    n = len(data.train_labels)
    train = FeatureSet({"block1": rng.normal(size=(n, 40)).astype(np.float32)}, rng.random((2, n, 40)))
    val = FeatureSet({"block1": rng.normal(size=(n, 40)).astype(np.float32)}, rng.random((2, n, 40)))
    out = probe_sources({"train": train, "val": val}, data, ProbeOptions(eval_l1=1e3))
    assert (out["_alpha"] == 0).all()
    assert set(out) == {"block1", EVAL_ROW, "_alpha"}
    assert 0.0 <= out[EVAL_ROW]["linear"].top1 <= 1.0


def test_norms_data_gives_the_trained_trunk_the_baselines_treatment(env, tmp_path):
    """--norms data: the trained trunk's BN statistics are re-estimated on the train split as the random
    trunks' are; its features are those of the recalibrated trunk, and differ from its own statistics'."""
    from mtssl.eval.probe import features_of

    options = options_of(env, cache_dir=tmp_path / "cache", norms="data")
    result = run_probe(options)
    assert result["norms"] == "data"
    data = load_split(options)
    recalibrated = features_of(load_trunk(env.trunk), data, options, recalibrate=True)
    own = features_of(load_trunk(env.trunk), data, options, recalibrate=False)
    expected = probe_sources(recalibrated, data, options)
    assert {n: round(e["linear"].top1, 4) for n, e in expected.items() if n != "_alpha"} == {
        n: r["linear"] for n, r in result["sources"].items()
    }
    sources = own["val"].sources
    assert any(not np.allclose(recalibrated["val"].sources[n], sources[n]) for n in sources)
    with pytest.raises(ValueError, match="--norms must be one of"):
        run_probe(replace(options, norms="mine"))
