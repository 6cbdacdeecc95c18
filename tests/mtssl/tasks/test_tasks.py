import itertools
import json

import pytest
import torch
import torch.nn.functional as F

from mtssl.contract import RELPOS_LABELS
from mtssl.inputs import MODES, split_grid
from mtssl.model import PENALTY, MultiTaskNet, NetworkConfig
from mtssl.tasks import TASKS, ExemplarHeadConfig, RelposHeadConfig, RelposTask
from mtssl.tasks.exemplar import draw_views, split_views, triplet_accuracy, triplet_loss
from mtssl.tasks.motion import mask_iou, motion_loss
from mtssl.tasks.relpos import relpos_input
from mtssl.train.step import total_loss

ALL = tuple(TASKS)
METRICS = {name: task.metric_name for name, task in TASKS.items()}


def expected_output_shape(task: str, n: int, size: int) -> tuple[int, ...]:
    return {
        "relpos": (n * 8, 8),  # every (centre, neighbour) pair, 8 classes
        "color": (n, 313, size // 4, size // 4),  # a quarter of the input resolution
        "exemplar": (n * 2, 16),  # one embedding per view
        "motion": (n, 1, size // 4, size // 4),  # resized to the mask in the loss
        "rotation": (n * 4, 4),  # every image in its four rotations, 4 classes
        "jigsaw": (n, TASKS["jigsaw"].tiny_config().permutations),  # one permutation class per sample
    }[task]


@pytest.mark.parametrize("depth,width", [(18, 8), (50, 4), (101, 2)])
@pytest.mark.parametrize("mode", MODES)
def test_shapes_for_every_depth_and_task(tiny_net, make_batch, depth, width, mode):
    net = tiny_net(depth=depth, width=width, input_mode=mode)
    assert net.trunk.num_units == {18: 2, 50: 6, 101: 23}[depth]
    assert net.lasso_weights().shape == (len(ALL), net.trunk.num_units)
    for task in ALL:
        head = net.tasks[task]
        inputs, targets = head.prepare(make_batch(task, n=2, size=32), mode, net.config.channels)
        assert inputs.dtype == torch.float32 and inputs.shape[1:] == (net.config.channels, 32, 32)
        outputs = head(net.features(inputs, task))
        assert outputs.shape == expected_output_shape(task, 2, 32)
        loss, metrics = head.loss_and_metric(outputs, targets)
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert 0.0 <= metrics[METRICS[task]].item() <= 1.0


def test_forward_returns_each_loss_and_the_penalty_which_the_trainer_sums(tiny_net, make_batch):
    net = tiny_net(l1=0.5)
    batches = {task: make_batch(task) for task in ALL}
    terms, metrics = net(batches, torch.Generator().manual_seed(0))
    assert list(terms) == [PENALTY, *ALL]
    total = total_loss(terms)
    task_losses = sum(metrics[f"{task}_loss"] for task in ALL)
    assert metrics["lasso_penalty"].item() == pytest.approx(0.5 * len(ALL))  # naive rows of L1 norm 1
    assert total.item() == pytest.approx((task_losses + metrics["lasso_penalty"]).item(), rel=1e-5)
    assert set(METRICS.values()) <= set(metrics)


def test_gradients_reach_every_parameter(tiny_net, make_batch):
    """Eval-mode BN, so biases that train-mode BN would cancel exactly still receive a gradient."""
    net = tiny_net(input_mode="native").eval()
    total = total_loss(net({task: make_batch(task) for task in ALL})[0])
    total.backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert {name for name, _ in net.named_parameters() if name.startswith("lasso.alpha")} == {
        f"lasso.alpha.{task}" for task in ALL
    }


def test_gradients_in_training_mode_reach_heads_and_lasso(tiny_net, make_batch):
    net = tiny_net()
    total = total_loss(net({task: make_batch(task) for task in ALL})[0])
    total.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if not name.startswith("trunk."):
            assert p.grad.abs().sum() > 0, name


def test_evaluation_row_trains_alone(tiny_net, make_batch):
    net = tiny_net(("motion",))
    row = net.add_eval_row("probe")
    net.features(torch.randn(2, 1, 32, 32), "probe").square().mean().backward()
    assert row.grad.abs().sum() > 0 and net.lasso.alpha["motion"].grad is None
    assert net.lasso_weights().shape == (1, 2)  # task rows only


@pytest.mark.parametrize("task,mode", list(itertools.product(ALL, MODES)))
def test_each_head_overfits_a_fixed_tiny_batch(tiny_net, make_batch, task, mode):
    net = tiny_net((task,), input_mode=mode)
    head = net.tasks[task]
    inputs, targets = head.prepare(
        make_batch(task, n=4 if task in ("relpos", "exemplar") else 2), mode, net.config.channels
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(100 if task == "color" else 60):
        loss, _ = head.loss_and_metric(head(net.features(inputs, task)), targets)
        optimizer.zero_grad()
        (loss + net.lasso_penalty()).backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-5:]) <= 0.1 * losses[0]


# ---- relative position ----------------------------------------------------------------------


def numbered_grid(n: int, size: int = 4) -> torch.Tensor:
    """(n, 1, 3*size, 3*size) tiling whose patch p is filled with the value p."""
    patches = torch.arange(9, dtype=torch.uint8).view(1, 9, 1, 1, 1).expand(n, 9, 1, size, size)
    return patches.reshape(n, 3, 3, 1, size, size).permute(0, 3, 1, 4, 2, 5).reshape(n, 1, 3 * size, 3 * size)


def test_relpos_pairs_the_centre_with_labelled_neighbours():
    grid = split_grid(numbered_grid(3), 3, 3)
    assert grid[0, :, 0, 0, 0].tolist() == list(range(9))
    every = RelposTask(8, 16, RelposHeadConfig(patch_dim=4, pair_dims=()))
    patches, labels = every.select(grid, None)
    assert patches[0, :, 0, 0, 0].tolist() == [4, 0, 1, 2, 3, 5, 6, 7, 8]
    assert labels.tolist() == list(range(8)) * 3
    one = RelposTask(8, 16, RelposHeadConfig(all_pairs=False, patch_dim=4, pair_dims=()))
    patches, labels = one.select(split_grid(numbered_grid(50), 3, 3), torch.Generator().manual_seed(0))
    assert patches.shape[1] == 2 and (patches[:, 0] == 4).all()
    neighbours = patches[:, 1, 0, 0, 0].tolist()
    assert labels.tolist() == [RELPOS_LABELS[nb] for nb in neighbours]
    assert len(set(neighbours)) == 8


def test_relpos_head_joins_the_centre_with_each_neighbour():
    task = RelposTask(4, 16, RelposHeadConfig(patch_channels=4, patch_dim=6, pair_dims=(5,)))
    features = torch.randn(2 * 9, 4, 2, 2)
    logits = task(features)
    swapped = features.view(2, 9, 4, 2, 2).clone()
    swapped[1, 3] += 1.0  # change neighbour 3 of sample 1 only
    changed = (task(swapped.flatten(0, 1)) - logits).abs().amax(dim=1)
    assert changed.nonzero().flatten().tolist() == [8 + 2]  # pair index of that neighbour


@pytest.mark.parametrize("mode,channels", [("harmonized", 1), ("native", 3)])
def test_relpos_patches_are_normalised_per_patch(mode, channels):
    patches = torch.randint(0, 256, (4, channels, 12, 12), dtype=torch.uint8)
    patches[0] //= 8  # a dark, low-contrast patch ends up at the same RMS
    x = relpos_input(patches, mode)
    assert x.shape == patches.shape and x.dtype == torch.float32
    assert torch.allclose(x.square().mean(dim=(1, 2, 3)).sqrt(), torch.full((4,), 50.0), atol=1e-3)
    if mode == "harmonized":
        assert torch.allclose(x.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-3)
    with pytest.raises(ValueError):
        relpos_input(patches[:, :1].expand(-1, 4 - channels, -1, -1), mode)


# ---- exemplar -------------------------------------------------------------------------------


def brute_force_triplets(emb: torch.Tensor, margin: float) -> tuple[float, float]:
    flat = F.normalize(emb.flatten(0, 1), dim=1)
    k = emb.shape[1]
    hinges, correct = [], []
    for a, p, n in itertools.product(range(len(flat)), repeat=3):
        if a != p and a // k == p // k and n // k != a // k:
            d_ap = 1 - flat[a] @ flat[p]
            d_an = 1 - flat[a] @ flat[n]
            hinges.append(max(0.0, (d_ap - d_an + margin).item()))
            correct.append(float(d_ap < d_an))
    return sum(hinges) / len(hinges), sum(correct) / len(correct)


@pytest.mark.parametrize("views", [2, 3])
def test_triplet_loss_and_accuracy_match_brute_force(views):
    emb = torch.randn(4, views, 5)
    loss, accuracy = brute_force_triplets(emb, margin=0.5)
    assert triplet_loss(emb, 0.5).item() == pytest.approx(loss, rel=1e-5)
    assert triplet_accuracy(emb).item() == pytest.approx(accuracy)


def test_hard_negatives_keep_the_largest_violations():
    emb = torch.randn(5, 2, 4)
    all_negatives = triplet_loss(emb, 0.5)
    hardest = triplet_loss(emb, 0.5, hard_negatives=1)
    assert hardest >= all_negatives
    assert triplet_loss(emb, 0.5, hard_negatives=8).item() == pytest.approx(all_negatives.item())


def test_triplet_loss_is_zero_when_views_agree_and_images_differ():
    basis = torch.eye(4)[:, None, :].expand(4, 2, 4)  # views identical, images orthogonal
    assert triplet_loss(basis, margin=0.5).item() == 0.0
    assert triplet_accuracy(basis).item() == 1.0


def test_exemplar_prepare_splits_every_view(make_batch):
    task = TASKS["exemplar"](8, 16, ExemplarHeadConfig(drawn_views=None))
    batch = {"rgb": torch.zeros(2, 3, 8, 24, dtype=torch.uint8)}
    batch["rgb"][:, :, :, 8:16] = 255  # the middle view white: L8 = 255 on the device
    inputs, targets = task.prepare(batch, "harmonized", 1)
    assert inputs.shape == (6, 1, 8, 8) and int(targets["views"]) == 3
    assert inputs[:, 0, 0, 0].tolist() == [-127.5, 127.5, -127.5] * 2


def test_split_views_counts_square_views():
    views = [torch.full((1, 2, 6, 6), float(k)) for k in range(3)]
    split = split_views(torch.cat(views, dim=3))
    assert split.shape == (1, 3, 2, 6, 6)
    assert split[0, :, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError):
        split_views(torch.zeros(1, 1, 6, 8))


def test_exemplar_draws_distinct_views_per_image():
    views = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(30, 4, 1, 2, 2)
    drawn = draw_views(views, 2, torch.Generator().manual_seed(0))[:, :, 0, 0, 0]
    assert drawn.shape == (30, 2) and (drawn[:, 0] != drawn[:, 1]).all()
    assert len({tuple(pair) for pair in drawn.tolist()}) > 4  # different pairs for different images
    assert draw_views(views, None, None) is views


# ---- motion ---------------------------------------------------------------------------------


def test_mask_iou_and_loss_on_a_hand_made_case():
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2] = 1.0  # 8 foreground pixels
    logits = torch.full((2, 1, 4, 4), -3.0)
    logits[0, 0, :1] = 3.0  # 4 of them predicted
    assert mask_iou(logits, mask).item() == pytest.approx((4 / 8 + 1.0) / 2)  # image 1: both empty
    expected = F.binary_cross_entropy(torch.sigmoid(logits), mask)
    assert motion_loss(logits, mask).item() == pytest.approx(expected.item(), rel=1e-5)


def test_motion_logits_are_resized_to_the_mask(make_batch):
    task = TASKS["motion"](8, 16)
    batch = make_batch("motion", n=2, size=48)
    inputs, targets = task.prepare(batch, "native", 3)
    assert targets["mask"].shape == (2, 1, 48, 48) and set(targets["mask"].unique().tolist()) == {0.0, 1.0}
    loss, metrics = task.loss_and_metric(torch.zeros(2, 1, 12, 12), targets)
    assert loss.item() == pytest.approx(float(torch.log(torch.tensor(2.0))), rel=1e-5)


def test_native_mode_rejects_a_grey_trunk():
    with pytest.raises(ValueError, match="3 input channels"):
        NetworkConfig(input_mode="native", in_channels=1)


def test_harmonized_network_can_take_rgb_trunk_for_released_weights(make_batch):
    config = NetworkConfig(tasks=("motion",), depth=18, width=4, in_channels=3, lasso=False, slim_strides=True)
    net = MultiTaskNet(config)
    loss, metrics = net.task_step("motion", make_batch("motion", size=64))
    assert torch.isfinite(loss) and net.trunk.conv1.in_channels == 3


def test_resolved_config_round_trips_through_json(tiny_net):
    net = tiny_net(input_mode="native", l1=0.01)
    resolved = json.loads(json.dumps(net.resolved_config()))
    assert resolved["tasks"]["relpos"]["pair_dims"] == [32]
    rebuilt = MultiTaskNet.from_resolved(resolved)
    assert rebuilt.resolved_config() == net.resolved_config()
    rebuilt.load_state_dict(net.state_dict())


def test_exemplar_names_its_drawn_views_apart_from_the_stored_ones_and_reads_the_old_name():
    task = TASKS["exemplar"]
    assert task.config_from_plain({"views": 3}).drawn_views == 3  # a run saved before the rename
    assert task.config_from_plain({"drawn_views": None}).drawn_views is None
    with pytest.raises(TypeError):
        task.config_from_plain({"stored_views": 3})
