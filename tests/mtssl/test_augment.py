"""Fresh randomness at training time (``mtssl.augment``) and how the tasks use it in ``prepare``.

The crops must be windows of the stored images, the flips exact mirrors of the chosen samples, and the tasks
must keep their targets right under both: relpos labels under a mirrored grid, colour targets aligned with
the cropped L, motion masks mirrored with their frames. In eval mode (and with ``augment=False``) nothing
is drawn at all.
"""

from __future__ import annotations

import pytest
import torch

import mtssl.tasks.relpos as relpos_module
from mtssl.augment import crop_at, crop_offsets, flip_mask, flip_where, random_crop
from mtssl.contract import RELPOS_LABELS
from mtssl.inputs import IMAGENET_MEAN, L_MEAN
from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.tasks import (
    ColorHeadConfig,
    ColorTask,
    ExemplarHeadConfig,
    ExemplarTask,
    MotionHeadConfig,
    MotionTask,
    RelposHeadConfig,
    RelposTask,
)

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
POSITION_OF_LABEL = {label: position for position, label in RELPOS_LABELS.items()}


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def numbered(n: int, c: int, h: int, w: int) -> torch.Tensor:
    """Every element distinct: value = ((sample * C + channel) * H + row) * W + column."""
    return torch.arange(n * c * h * w, dtype=torch.long).view(n, c, h, w)


def offsets_of(crops: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Recover each crop's top-left corner from its first element (see ``numbered``)."""
    first = crops[:, 0, 0, 0] % (h * w)
    return first // w, first % w


# ---- crops ------------------------------------------------------------------------------------------------


def test_every_crop_is_the_input_window_at_its_offsets():
    n, c, h, w, side = 64, 2, 10, 13, 6
    x = numbered(n, c, h, w)
    crops = random_crop(x, side, gen(0))
    assert crops.shape == (n, c, side, side)
    ys, xs = offsets_of(crops, h, w)
    for i in range(n):
        y, xx = int(ys[i]), int(xs[i])
        assert 0 <= y <= h - side and 0 <= xx <= w - side
        assert torch.equal(crops[i], x[i, :, y : y + side, xx : xx + side]), i
    assert len(set(zip(ys.tolist(), xs.tolist(), strict=True))) > 20  # per-sample windows, not one for the batch


def test_crop_at_takes_the_given_corners_per_sample():
    x = numbered(3, 3, 8, 9)
    ys, xs = torch.tensor([0, 2, 4]), torch.tensor([5, 0, 3])
    crops = crop_at(x, ys, xs, 4)
    for i in range(3):
        assert torch.equal(crops[i], x[i, :, ys[i] : ys[i] + 4, xs[i] : xs[i] + 4])


def test_not_random_is_the_central_window():
    h, w, side = 10, 13, 6  # rooms 4 and 7: centre corner (2, 3)
    x = numbered(5, 1, h, w)
    crops = random_crop(x, side, gen(0), random=False)
    assert torch.equal(crops, x[:, :, 2 : 2 + side, 3 : 3 + side])
    assert crop_offsets(4, 7, torch.device("cpu"), gen(0), random=False).tolist() == [3] * 4
    assert crop_offsets(4, 0, torch.device("cpu"), gen(0), random=True).tolist() == [0] * 4


def test_seeded_crops_repeat_and_other_seeds_differ():
    x = numbered(32, 1, 12, 12)
    assert torch.equal(random_crop(x, 5, gen(3)), random_crop(x, 5, gen(3)))
    assert not torch.equal(random_crop(x, 5, gen(3)), random_crop(x, 5, gen(4)))


def test_all_offsets_are_reached():
    h, w, side = 7, 9, 4  # rooms 3 and 5: 4 x 6 corners
    x = numbered(2000, 1, h, w)
    ys, xs = offsets_of(random_crop(x, side, gen(1)), h, w)
    corners = set(zip(ys.tolist(), xs.tolist(), strict=True))
    assert corners == {(y, xx) for y in range(h - side + 1) for xx in range(w - side + 1)}


def test_crop_sizes_none_whole_and_too_large():
    x = numbered(2, 1, 8, 10)
    assert random_crop(x, None, gen(0)) is x
    assert random_crop(x, 10, gen(0)) is x  # at least the stored size: the stored images
    with pytest.raises(ValueError, match="larger than the stored"):
        random_crop(x, 9, gen(0))


# ---- flips ------------------------------------------------------------------------------------------------


def test_flip_where_mirrors_exactly_the_masked_samples():
    x = numbered(6, 2, 3, 5)
    mask = torch.tensor([True, False, False, True, True, False])
    out = flip_where(x, mask)
    for i in range(6):
        assert torch.equal(out[i], x[i].flip(-1) if mask[i] else x[i]), i
    bins = numbered(6, 1, 4, 4)[:, 0]  # (N, h, w): the colour bins' layout
    out = flip_where(bins, mask)
    assert all(torch.equal(out[i], bins[i].flip(-1) if mask[i] else bins[i]) for i in range(6))


def test_flip_mask_draws_half_seeded_and_none_when_not_random():
    cpu = torch.device("cpu")
    mask = flip_mask(2000, cpu, gen(0), random=True)
    assert mask.dtype == torch.bool and 900 < int(mask.sum()) < 1100
    assert torch.equal(mask, flip_mask(2000, cpu, gen(0), random=True))
    assert not torch.equal(mask, flip_mask(2000, cpu, gen(1), random=True))
    assert not flip_mask(50, cpu, gen(0), random=False).any()


# ---- relative position: mirrored grids keep their labels right --------------------------------------------


def ramp_grid(n: int, patch: int = 8) -> tuple[torch.Tensor, list[int]]:
    """(n, 3, 3P, 3P) uint8 tiling: patch p is the constant ``base[p]`` plus its column index (0..P-1)."""
    base = [20 * p + 10 for p in range(9)]
    column = torch.arange(patch).view(1, patch).expand(patch, patch)
    patches = torch.stack([b + column for b in base])  # (9, P, P)
    tiles = patches.view(3, 3, patch, patch).permute(0, 2, 1, 3).reshape(3 * patch, 3 * patch)
    return tiles.to(torch.uint8).expand(n, 3, -1, -1).contiguous(), base


def test_relpos_flipped_grid_labels_say_where_the_neighbour_is(monkeypatch):
    """Labels against the mirrored grid: the neighbour labelled at position (r, c) of the mirrored image is
    the stored patch (r, 2 - c), itself mirrored. Normalisation is skipped so the patches stay readable."""
    monkeypatch.setattr(relpos_module, "relpos_input", lambda x, *args, **kwargs: x.float())
    n, patch = 24, 8
    tiles, base = ramp_grid(n, patch)
    task = RelposTask(
        8, 16, RelposHeadConfig(patch_channels=4, patch_dim=8, pair_dims=(8,), flip=True, downsample_prob=0)
    )
    x, targets = task.prepare({"rgb": tiles}, "native", 3, gen(0))
    patches = x.view(n, 9, 3, patch, patch)[:, :, 0]  # centre first, then the 8 neighbours
    labels = targets["labels"].view(n, 8)
    ramp = torch.arange(patch, dtype=torch.float32)
    flipped = []
    for i in range(n):
        mirrored = bool(patches[i, 0, 0, 0] > patches[i, 0, 0, -1])  # the centre's ramp runs right to left
        flipped.append(mirrored)
        column = ramp.flip(0) if mirrored else ramp
        assert torch.equal(patches[i, 0], (base[4] + column).expand(patch, patch))
        for j in range(8):
            row, col = divmod(POSITION_OF_LABEL[int(labels[i, j])], 3)
            stored = row * 3 + (2 - col if mirrored else col)
            assert torch.equal(patches[i, j + 1], (base[stored] + column).expand(patch, patch)), (i, j, mirrored)
    assert 0 < sum(flipped) < n  # both cases were checked


def test_relpos_crops_are_windows_of_each_patch(monkeypatch):
    """Each patch's crop is a run of its own ramp, drawn per patch; eval takes the central window."""
    monkeypatch.setattr(relpos_module, "relpos_input", lambda x, *args, **kwargs: x.float())
    n, patch, crop = 16, 8, 5
    tiles, base = ramp_grid(n, patch)
    order = [4, 0, 1, 2, 3, 5, 6, 7, 8]  # centre first
    bases = torch.tensor([base[p] for p in order], dtype=torch.float32).view(1, 9, 1, 1)
    config = RelposHeadConfig(patch_channels=4, patch_dim=8, pair_dims=(8,), crop=crop, downsample_prob=0)
    task = RelposTask(8, 16, config)
    for mode, centre in (("train", None), ("eval", (patch - crop) // 2)):
        task.train(mode == "train")
        x, _ = task.prepare({"rgb": tiles}, "native", 3, gen(0))
        windows = x.view(n, 9, 3, crop, crop)[:, :, 0] - bases
        starts = windows[:, :, 0, 0]
        assert ((starts >= 0) & (starts <= patch - crop)).all()
        runs = starts[..., None, None] + torch.arange(crop, dtype=torch.float32)
        assert torch.equal(windows, runs.expand_as(windows))
        if centre is None:
            assert set(starts.flatten().tolist()) == set(range(patch - crop + 1))  # drawn per patch
        else:
            assert (starts == centre).all()


# ---- colour: the L window and the target window stay aligned ------------------------------------------------


def coordinate_batch(n: int, size: int = 32) -> dict[str, torch.Tensor]:
    """L whose every pixel holds the index of its target pixel (stride 4); bins hold that index too, and
    ab the target pixel's (row, column)."""
    side = size // 4
    index = torch.arange(side * side).view(side, side)
    l8 = index.repeat_interleave(4, 0).repeat_interleave(4, 1).to(torch.uint8)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    ab = torch.stack([rows, cols]).to(torch.int8) * 10 + 10  # colourful: not grayscale
    return {
        "l": l8.expand(n, 1, size, size).contiguous(),
        "ab": ab.expand(n, 2, side, side).contiguous(),
        "bins": index.expand(n, side, side).contiguous(),
        "grayscale": torch.zeros(n, dtype=torch.bool),
    }


def check_color_alignment(x: torch.Tensor, bins: torch.Tensor) -> None:
    l8 = (x[:, 0] + L_MEAN).round().long()
    n, h, w = bins.shape
    assert l8.shape == (n, 4 * h, 4 * w)
    blocks = l8.view(n, h, 4, w, 4)
    assert torch.equal(blocks, bins.view(n, h, 1, w, 1).expand_as(blocks))


def test_color_crop_and_flip_keep_l_and_targets_aligned():
    n, size, crop = 32, 32, 16
    task = ColorTask(8, 16, ColorHeadConfig(hidden=8, crop=crop, flip=True))
    x, targets = task.prepare(coordinate_batch(n, size), "harmonized", 1, gen(0))
    assert x.shape == (n, 1, crop, crop) and targets["bins"].shape == (n, crop // 4, crop // 4)
    check_color_alignment(x, targets["bins"])
    bins = targets["bins"]
    corner_row, corner_col = bins[:, 0, 0] // 8, bins[:, 0, 0] % 8
    mirrored = bins[:, 0, 0] > bins[:, 0, -1]
    left = torch.where(mirrored, bins[:, 0, -1], bins[:, 0, 0]) % 8
    assert 0 < int(mirrored.sum()) < n
    assert set(corner_row.tolist()) == set(range(5)) and set(left.tolist()) == set(range(5))  # all offsets
    assert corner_col.max() < 8


def test_color_eval_takes_the_central_window_unflipped():
    task = ColorTask(8, 16, ColorHeadConfig(hidden=8, crop=16, flip=True)).eval()
    x, targets = task.prepare(coordinate_batch(4), "harmonized", 1, gen(0))
    check_color_alignment(x, targets["bins"])
    side = 4  # target window of a 16-px crop; 8 target pixels, room 4, centre 2
    expected = torch.arange(64).view(8, 8)[2 : 2 + side, 2 : 2 + side]
    assert all(torch.equal(b, expected) for b in targets["bins"])


def test_color_crop_must_be_a_multiple_of_the_target_stride():
    task = ColorTask(8, 16, ColorHeadConfig(hidden=8, crop=18))
    with pytest.raises(ValueError, match="multiple of the target stride"):
        task.prepare(coordinate_batch(2), "harmonized", 1, gen(0))


# ---- exemplar and motion ---------------------------------------------------------------------------------------


def test_exemplar_views_are_cropped_and_flipped_one_by_one():
    n, k, view, crop = 8, 3, 16, 12
    values = numbered(n * k, 1, view, view) % 251  # distinct within a view; uint8
    tiles = values.view(n, k, view, view).permute(0, 2, 1, 3).reshape(n, 1, view, k * view)
    rgb = tiles.expand(n, 3, view, k * view).to(torch.uint8).contiguous()
    task = ExemplarTask(8, 16, ExemplarHeadConfig(hidden=8, dim=4, drawn_views=None, crop=crop, flip=True))
    x, targets = task.prepare({"rgb": rgb}, "native", 3, gen(0))
    assert int(targets["views"]) == k and x.shape == (n * k, 3, crop, crop)
    got = (x + MEAN).round().long()[:, 0]
    stored = values.view(n * k, view, view)
    flips = 0
    for i in range(n * k):
        found = [
            (y, xx, mirrored)
            for y in range(view - crop + 1)
            for xx in range(view - crop + 1)
            for mirrored in (False, True)
            if torch.equal(
                got[i], flip_where(stored[i : i + 1, y : y + crop, xx : xx + crop], torch.tensor([mirrored]))[0]
            )
        ]
        assert len(found) == 1, i  # exactly one window of its own view, mirrored or not
        flips += found[0][2]
    assert 0 < flips < n * k


def test_motion_frame_and_mask_are_flipped_together():
    n, h, w = 32, 8, 12
    ramp = torch.arange(w, dtype=torch.uint8).mul(20).expand(n, 3, h, w).contiguous()
    mask = torch.zeros(n, 1, h, w, dtype=torch.uint8)
    mask[..., : w // 3] = 255  # the left third moves
    task = MotionTask(8, 16, MotionHeadConfig(hidden=4, flip=True))
    x, targets = task.prepare({"rgb": ramp, "mask": mask}, "native", 3, gen(0))
    frame = (x + MEAN).round()[:, 0]
    mirrored = frame[:, 0, 0] > frame[:, 0, -1]
    assert 0 < int(mirrored.sum()) < n
    for i in range(n):
        expected_frame = ramp[i, 0].flip(-1) if mirrored[i] else ramp[i, 0]
        expected_mask = (mask[i, 0].flip(-1) if mirrored[i] else mask[i, 0]) > 127
        assert torch.equal(frame[i], expected_frame.float())
        assert torch.equal(targets["mask"][i, 0], expected_mask.float()), i


# ---- no randomness in eval mode or without augment ------------------------------------------------------------


CONFIGS = {
    "relpos": RelposHeadConfig(patch_channels=4, patch_dim=8, pair_dims=(8,), crop=12, flip=True, downsample_prob=0),
    "color": ColorHeadConfig(hidden=8, crop=16),
    "exemplar": ExemplarHeadConfig(hidden=8, dim=4, drawn_views=None, crop=12),
    "motion": MotionHeadConfig(hidden=4),
}


def stored_batch(task: str, n: int = 8) -> dict[str, torch.Tensor]:
    g = gen(5)

    def image(c: int, h: int, w: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)

    if task == "relpos":
        return {"rgb": image(3, 48, 48)}
    if task == "color":
        return {**coordinate_batch(n, 32), "l": image(1, 32, 32)}
    if task == "exemplar":
        return {"rgb": image(3, 16, 48)}
    return {"rgb": image(3, 16, 24), "mask": image(1, 16, 24)}


def prepared(task: torch.nn.Module, name: str, seed: int) -> list[torch.Tensor]:
    x, targets = task.prepare(stored_batch(name), "harmonized", 1, gen(seed))
    return [x, *(targets[key] for key in sorted(targets))]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_train_mode_draws_and_eval_mode_does_not(name):
    net = MultiTaskNet(NetworkConfig(tasks=(name,), depth=18, width=4), {name: CONFIGS[name]})
    task = net.tasks[name]
    assert task.augment and task.training and task.randomised()
    assert not same(prepared(task, name, 1), prepared(task, name, 2))
    net.eval()
    assert not task.randomised()
    assert same(prepared(task, name, 1), prepared(task, name, 2))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_network_without_augment_draws_nothing_in_train_mode(name):
    net = MultiTaskNet(NetworkConfig(tasks=(name,), depth=18, width=4, augment=False), {name: CONFIGS[name]})
    task = net.tasks[name]
    assert task.training and not task.augment and not task.randomised()
    assert same(prepared(task, name, 1), prepared(task, name, 2))
    eval_mode = prepared(net.eval().tasks[name], name, 1)
    assert same(prepared(net.train().tasks[name], name, 3), eval_mode)  # the central, unflipped windows
