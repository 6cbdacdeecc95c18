"""Jigsaw puzzles on the device: a fixed set of far-apart permutations, tiles shuffled as the label says, a
head that reads the tiles in order; trained alone and beside rotation on tiny sets built by the producer."""

from __future__ import annotations

import itertools
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtssl.contract import ShardSetError, decode_jpeg, tar_samples_of
from mtssl.data.shardsets import load_set
from mtssl.data.stream import TaskSpec, fields_for, fixed_batches
from mtssl.report.figures import logged_tasks
from mtssl.tasks import TASKS
from mtssl.tasks.base import RunOptions, resolve_widths
from mtssl.tasks.jigsaw import (
    NUM_TILES,
    JigsawHeadConfig,
    JigsawTask,
    maximal_permutations,
    min_hamming,
    shift_channels,
)
from mtssl.train.checkpoint import load_checkpoint
from mtssl.train.config import TrainConfig
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.loop import train

TILE = 32  # the tiny sets' tiles: 3 x 3 cells of 36 px in a 108-px crop (4 px of jitter)


def radial_images(folder: Path, count: int = 16, seed: int = 0) -> None:
    """Photos of one bright blob near the centre: each of the nine tiles shows a different side of it, so the
    arrangement is learnable by a tiny trunk in a few dozen steps (per-tile normalisation keeps the slopes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:120, 0:140]
    for i in range(count):
        centre = np.array([60, 70]) + rng.uniform(-4, 4, 2)
        blob = np.clip(1 - np.hypot(y - centre[0], x - centre[1]) / 60, 0, 1)
        image = blob[..., None] * rng.uniform(128, 255, 3) + rng.normal(0, 6, (120, 140, 3))
        cv2.imwrite(str(folder / f"blob{i:02d}.jpg"), image.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny jigsaw set and a tiny rotation set of the same 16 images, built in-process by the producer."""
    from pipelines.build import build
    from pipelines.recipes.jigsaw import JigsawRecipeConfig
    from pipelines.recipes.rotation import RotationRecipeConfig

    root = tmp_path_factory.mktemp("jigsaw")
    radial_images(root / "images" / "blobs")
    recipes = {
        "jigsaw": JigsawRecipeConfig(short_side=112, size=108, tile=TILE, min_source_side=64),
        "rotation": RotationRecipeConfig(size=64, min_source_side=64),
    }
    for task, recipe in recipes.items():
        build(task, root / "images", root / "shards" / task, recipe, workers=0, samples_per_shard=4,
              show_progress=False)  # fmt: skip
    return root / "shards"


def tiny_run(shards: Path, out: Path, tasks: tuple[str, ...], **overrides) -> TrainConfig:
    """A CPU run of a depth-18, width-8 trunk with the tasks' tiny heads."""
    options = {task: asdict(TASKS[task].tiny_config()) for task in tasks}
    base = TrainConfig(shards=str(shards), out=str(out), tasks=tasks, depth=18, width=8, batch_size=8, workers=0,
                       shuffle_buffer=16, warmup_steps=0, log_every=1, device="cpu", progress=False,
                       task_options=options)  # fmt: skip
    return replace(base, **overrides)


def step_records(run: str | Path) -> list[dict]:
    return [r for r in read_log(Path(run) / LOG_FILE) if "loss" in r]


# ---- the permutation set --------------------------------------------------------------------------


def test_the_permutation_set_is_distinct_far_apart_and_the_same_every_time():
    perms = maximal_permutations(100)
    assert perms.shape == (100, NUM_TILES)
    assert all(sorted(p) == list(range(NUM_TILES)) for p in perms.tolist())
    assert len({tuple(p) for p in perms.tolist()}) == 100
    assert min_hamming(perms) == 6  # the greedy max-min selection: no two classes share more than 3 places
    assert min_hamming(perms[:10]) == 8  # the first ones are farther apart still
    every = np.array(list(itertools.permutations(range(NUM_TILES))))
    drawn = every[np.random.default_rng(0).choice(len(every), 100, replace=False)]
    assert min_hamming(drawn) < 6  # 100 permutations drawn at random come closer
    assert np.array_equal(maximal_permutations.__wrapped__(100), perms)  # recomputed, not only cached
    assert np.array_equal(JigsawTask(8, 16, JigsawHeadConfig()).perm_table.numpy(), perms)  # the default: 100


# ---- input preparation -------------------------------------------------------------------------------


def marked_tiles(n: int, side: int = 16) -> torch.Tensor:
    """(n, 3, 3*side, 3*side) uint8 grids, black but for one white pixel at (p, p) inside tile p."""
    mosaic = torch.zeros(n, 3, 3 * side, 3 * side, dtype=torch.uint8)
    for p in range(NUM_TILES):
        row, col = divmod(p, 3)
        mosaic[:, :, row * side + p, col * side + p] = 255
    return mosaic


@pytest.mark.parametrize("mode,channels", [("harmonized", 1), ("native", 3)])
def test_prepare_shuffles_the_tiles_as_the_drawn_label_says(mode, channels):
    task = JigsawTask(8, 16, JigsawTask.tiny_config()).eval()
    inputs, targets = task.prepare({"tiles": marked_tiles(16)}, mode, channels, torch.Generator().manual_seed(0))
    labels = targets["labels"]
    assert inputs.shape == (16 * NUM_TILES, channels, 16, 16) and inputs.dtype == torch.float32
    assert labels.shape == (16,) and len(set(labels.tolist())) > 4  # drawn per sample
    places = inputs[:, 0].flatten(1).argmax(dim=1).view(16, NUM_TILES)  # where each fed tile has its mark
    assert torch.equal(places // 17, task.perm_table[labels])  # place i holds tile perm[label][i]
    again, other = ({"tiles": marked_tiles(16)} for _ in range(2))
    assert torch.equal(task.prepare(again, mode, channels, torch.Generator().manual_seed(0))[1]["labels"], labels)
    assert not torch.equal(task.prepare(other, mode, channels, torch.Generator().manual_seed(1))[1]["labels"], labels)


def test_native_training_input_is_normalised_per_tile_and_grays_some_samples():
    task = JigsawTask(8, 16, JigsawHeadConfig(tile_dim=8, hidden=8, gray_prob=0.5))
    g = torch.Generator().manual_seed(0)
    inputs, _ = task.prepare(JigsawTask.example_batch(32, 16, g), "native", 3, g)
    flat = inputs.flatten(1)
    assert torch.allclose(flat.mean(dim=1), torch.zeros(len(flat)), atol=1e-3)
    assert torch.allclose(flat.std(dim=1, correction=0), torch.full((len(flat),), 50.0), rtol=1e-3)
    gray = (inputs[:, 0] == inputs[:, 1]).flatten(1).all(dim=1).view(32, NUM_TILES)
    assert (gray.all(dim=1) | ~gray.any(dim=1)).all()  # a sample's nine tiles are all gray or all colour
    assert 4 < gray.all(dim=1).sum() < 28


def test_channel_jitter_moves_each_colour_channel_by_at_most_two_pixels():
    tiles = torch.zeros(64, 3, 9, 9)
    tiles[:, :, 4, 4] = 255.0
    shifted = shift_channels(tiles, 2, torch.Generator().manual_seed(0))
    where = shifted.flatten(2).argmax(dim=2)  # (64, 3)
    dy, dx = where // 9 - 4, where % 9 - 4
    assert dy.abs().max() == 2 and dx.abs().max() == 2
    assert (shifted.flatten(2).max(dim=2).values == 255).all()  # moved, not lost
    assert (where[:, 0] != where[:, 1]).any()  # the channels of one tile move apart


# ---- the head ----------------------------------------------------------------------------------------


def test_the_head_classifies_nine_tiles_in_their_order_into_the_permutations():
    task = JigsawTask(16, 16, JigsawHeadConfig(permutations=24, tile_dim=8, hidden=16, pool_grid=2))
    features = torch.randn(3 * NUM_TILES, 16, 4, 4)
    outputs = task(features)
    assert outputs.shape == (3, 24) and task.perm_table.shape == (24, NUM_TILES)
    swapped = features.view(3, NUM_TILES, 16, 4, 4)[:, [1, 0, *range(2, NUM_TILES)]].flatten(0, 1)
    assert not torch.allclose(task(swapped), outputs)  # the order of the tiles is what it reads
    loss, metrics = task.loss_and_metric(outputs, {"labels": torch.tensor([0, 5, 23])})
    assert loss.ndim == 0 and 0.0 <= metrics["jigsaw_acc"].item() <= 1.0


def test_the_head_widths_follow_the_trunk_from_the_papers():
    paper, narrow = (resolve_widths(JigsawHeadConfig(), channels) for channels in (1024, 64))
    assert (paper.tile_dim, paper.hidden) == (512, 4096)  # Noroozi & Favaro's fc6 per tile and fc7
    assert (narrow.tile_dim, narrow.hidden) == (32, 256)


# ---- with the producer's sets ---------------------------------------------------------------------------


def test_the_loader_batches_the_stored_tiles(shards):
    sset = load_set(shards / "jigsaw")
    batch = fixed_batches(TaskSpec("jigsaw", tuple(sset.urls), fields_for(("tiles",)), batch_size=4), 1)[0]
    assert set(batch) == {"tiles"} and batch["tiles"].shape == (4, 3, 3 * TILE, 3 * TILE)
    assert batch["tiles"].dtype == torch.uint8
    first = next(iter(tar_samples_of(Path(sset.urls[0]).read_bytes(), sset.urls[0])))
    stored = torch.from_numpy(np.ascontiguousarray(decode_jpeg(first["tiles.jpg"]))).permute(2, 0, 1).int()
    assert (batch["tiles"][0].int() - stored).abs().max() <= 1


def test_a_crop_larger_than_the_stored_tiles_is_refused_before_training(shards):
    sset = load_set(shards / "jigsaw")
    JigsawTask.check_set(sset, RunOptions(config=JigsawHeadConfig(crop=TILE - 4)))
    with pytest.raises(ShardSetError, match=f"stores {TILE}-px tiles.*crop {TILE + 8}"):
        JigsawTask.check_set(sset, RunOptions(config=JigsawHeadConfig(crop=TILE + 8)))


def test_jigsaw_alone_learns_the_arrangement(shards, tmp_path):
    cfg = tiny_run(shards, tmp_path / "alone", ("jigsaw",), steps=60, save_every=60, decay="none", val_shards=0)
    train(cfg)
    losses = [r["jigsaw_loss"] for r in step_records(cfg.out)]
    assert len(losses) == 60
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    classes = JigsawTask.tiny_config().permutations
    assert first == pytest.approx(np.log(classes), abs=0.15)  # chance among the permutations
    assert last < 0.85 * first, f"{first:.3f} -> {last:.3f}"


def test_jigsaw_trains_beside_rotation_under_the_lasso(shards, tmp_path):
    cfg = tiny_run(shards, tmp_path / "both", ("jigsaw", "rotation"), steps=3, save_every=3)
    record = train(cfg)
    records = step_records(cfg.out)
    assert [r["step"] for r in records] == [1, 2, 3]
    for key in ("jigsaw_loss", "jigsaw_acc", "rotation_loss", "rotation_acc"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert record["event"] == "end" and set(logged_tasks(records)) == {"jigsaw", "rotation"}  # the report's curves
    saved = load_checkpoint(Path(cfg.out) / "ckpt-00000003.pt")
    table = maximal_permutations(JigsawTask.tiny_config().permutations)
    assert torch.equal(saved["model"]["tasks.jigsaw.perm_table"], torch.from_numpy(table.copy()))
    assert saved["lasso"].shape[0] == 2 and (Path(cfg.out) / "trunk.pt").is_file()  # the probe reads the trunk
