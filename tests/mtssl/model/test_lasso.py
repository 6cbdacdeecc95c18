import pytest
import torch
import torch.nn.functional as F

from mtssl.model import LassoCombiner, NetworkConfig, l1_penalty, naive_row


def random_units(num: int = 4, n: int = 3, channels: int = 5, size: int = 3) -> list[torch.Tensor]:
    return [torch.randn(n, channels, size, size) * (m + 1) + m for m in range(num)]


def test_initial_rows_reproduce_the_naive_network():
    units = random_units()
    lasso = LassoCombiner(4, 5, ["relpos", "color"])
    naive = LassoCombiner(4, 5, ["relpos"], enabled=False)
    expected = F.relu(F.batch_norm(units[-1], None, None, training=True))
    assert torch.allclose(lasso(units, "color"), expected, atol=1e-6)
    assert torch.allclose(naive(units, "relpos"), expected, atol=1e-6)
    assert torch.equal(lasso.weights(), torch.tensor([[0.0, 0, 0, 1], [0, 0, 0, 1]]))


def test_mix_is_the_weighted_sum_of_normalised_units():
    units = random_units()
    lasso = LassoCombiner(4, 5, ["t"])
    with torch.no_grad():
        lasso.alpha["t"].copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    candidates = [F.relu(F.batch_norm(u, None, None, training=True)) for u in units]
    expected = 0.5 * candidates[0] - candidates[1] + 2.0 * candidates[3]
    assert torch.allclose(lasso(units, "t"), expected, atol=1e-5)


def test_penalty_is_l1_of_the_rows_times_its_coefficient():
    lasso = LassoCombiner(3, 2, ["a", "b"])
    with torch.no_grad():
        lasso.alpha["a"].copy_(torch.tensor([0.5, -1.5, 0.0]))
    assert lasso.penalty(0.1).item() == pytest.approx(0.1 * (2.0 + 1.0))
    assert lasso.penalty(0.1, rows=["a"]).item() == pytest.approx(0.2)
    assert l1_penalty([torch.tensor([-3.0, 4.0])], 2.0).item() == pytest.approx(14.0)


def test_switched_off_lasso_has_nothing_to_learn_or_penalise():
    lasso = LassoCombiner(4, 5, ["a"], enabled=False)
    assert list(lasso.parameters()) == []
    assert lasso.penalty(1.0).item() == 0.0
    assert lasso.add_row("probe") is None
    assert torch.equal(lasso.weights(), naive_row(4)[None].expand(2, 4))


def test_evaluation_row_is_added_naive_and_learnable():
    lasso = LassoCombiner(4, 5, ["a"])
    row = lasso.add_row("probe")
    assert row.requires_grad and torch.equal(row.detach(), naive_row(4))
    lasso(random_units(), "probe").sum().backward()
    assert row.grad is not None and lasso.alpha["a"].grad is None
    with pytest.raises(ValueError):
        lasso.add_row("probe")
    with pytest.raises(KeyError):
        lasso(random_units(), "missing")


def test_unequal_units_raise_a_clear_error():
    units = random_units()
    units[-1] = units[-1][..., :2, :2]
    with pytest.raises(ValueError, match="slim_strides"):
        LassoCombiner(4, 5, ["a"])(units, "a")
    with pytest.raises(ValueError, match="slim_strides"):
        NetworkConfig(lasso=True, slim_strides=True)


def test_slim_layout_works_without_the_lasso(tiny_net):
    net = tiny_net(("motion",), lasso=False, slim_strides=True)
    features = net.features(torch.randn(2, 1, 64, 64), "motion")
    assert features.shape == (2, net.trunk.out_channels, 2, 2)


def fit_synthetic(l1: float, steps: int = 300) -> tuple[torch.Tensor, float]:
    """Regression where only unit 1 (of 5) carries the signal; the other units are noise the head can ignore.

    Signal lives in channels 0-3 of unit 1, noise in channels 4-7 of the others, so once the head stops
    reading channels 4-7 the data term no longer cares about the noise weights: only L1 removes them.
    Starts from the naive row (all weight on the last, noisy unit).
    """
    torch.manual_seed(0)
    n, channels, size, signal = 64, 8, 4, 1
    units = []
    for m in range(5):
        unit = torch.zeros(n, channels, size, size)
        unit[:, :4] = torch.randn(n, 4, size, size) if m == signal else 0
        unit[:, 4:] = 0 if m == signal else torch.randn(n, 4, size, size)
        units.append(unit)
    readout = torch.randn(4)
    clean = F.relu(F.batch_norm(units[signal], None, None, training=True))[:, :4]
    target = (clean * readout[None, :, None, None]).mean((2, 3)).sum(1)
    lasso = LassoCombiner(5, channels, ["t"])
    head = torch.nn.Conv2d(channels, 1, 1)
    optimizer = torch.optim.Adam([*lasso.parameters(), *head.parameters()], lr=0.05)
    for _ in range(steps):
        mse = F.mse_loss(head(lasso(units, "t")).mean((1, 2, 3)), target)
        optimizer.zero_grad()
        (mse + lasso.penalty(l1)).backward()
        optimizer.step()
    return lasso.alpha["t"].detach(), mse.item()


def test_l1_penalty_drives_the_unused_units_to_zero():
    alpha, mse = fit_synthetic(l1=0.01)
    others = torch.cat([alpha[:1], alpha[2:]])
    assert others.abs().max() < 0.01
    assert alpha[1].abs() > 0.2
    assert mse < 0.01


def test_without_the_penalty_the_noise_weights_survive():
    alpha, mse = fit_synthetic(l1=0.0)
    assert mse < 0.01
    assert torch.cat([alpha[:1], alpha[2:]]).abs().max() > 0.1
