import numpy as np
import pytest
import torch

from mtssl.contract import NUM_AB_BINS, ab_bins
from mtssl.tasks.color import (
    ColorHeadConfig,
    ColorTask,
    color_accuracy,
    color_loss,
    is_grayscale,
    rebalance_weights,
    smooth_prior,
    soft_encode,
    soft_encoding_table,
)

BINS = ab_bins().astype(np.float64)


def sample_ab(count: int, seed: int = 0) -> np.ndarray:
    """Integer ab points: random ones, bin centres, midpoints and the int8 corners."""
    rng = np.random.default_rng(seed)
    points = [rng.integers(-128, 128, (count, 2)), ab_bins()[:50], ab_bins()[:50] + 5]
    points.append(np.array([[-128, -128], [127, 127], [-128, 127], [0, 0], [3, -7]]))
    return np.concatenate(points).astype(np.int64)


def brute_force_soft(ab: np.ndarray, k: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distances of the k nearest bins and their normalised Gaussian weights (float64)."""
    dist = np.sqrt(((ab[:, None, :] - BINS[None]) ** 2).sum(-1))
    nearest = np.sort(dist, axis=1)[:, :k]
    weights = np.exp(-(nearest**2) / (2 * sigma**2))
    return nearest, weights / weights.sum(1, keepdims=True)


def encode(ab: np.ndarray, k: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    tensor = torch.from_numpy(ab.T.astype(np.int8))[None, :, :, None]  # (1, 2, P, 1)
    indices, weights = soft_encode(tensor, soft_encoding_table(k, sigma))
    return indices[0, :, :, 0].T.numpy(), weights[0, :, :, 0].T.double().numpy()


@pytest.mark.parametrize("k", [5, 10])
def test_soft_encoding_matches_brute_force(k):
    ab = sample_ab(400)
    indices, weights = encode(ab, k, sigma=5.0)
    nearest, expected_weights = brute_force_soft(ab, k, 5.0)
    chosen = np.sqrt(((ab[:, None, :] - BINS[indices]) ** 2).sum(-1))
    order = np.argsort(chosen, axis=1, kind="stable")
    # Ties between equidistant bins may be broken either way; distances and weights are unique.
    assert np.allclose(np.take_along_axis(chosen, order, 1), nearest)
    assert np.allclose(np.take_along_axis(weights, order, 1), expected_weights, atol=1e-6)
    assert np.allclose(weights.sum(1), 1.0, atol=1e-6)
    assert all(len(set(row)) == k for row in indices.tolist())


def test_soft_encoding_of_a_bin_centre_peaks_on_that_bin():
    centre = ab_bins()[100:101]
    indices, weights = encode(centre, k=5, sigma=5.0)
    assert indices[0, weights[0].argmax()] == 100
    # four grid neighbours at distance 10: weight exp(-100 / 50) relative to the centre
    assert weights[0].max() == pytest.approx(1 / (1 + 4 * np.exp(-2.0)), rel=1e-5)


def test_rebalancing_weights_match_brute_force():
    prior = np.random.default_rng(0).dirichlet(np.full(NUM_AB_BINS, 0.3))
    lam, q = 0.5, NUM_AB_BINS
    raw = [1.0 / ((1 - lam) * prior[i] + lam / q) for i in range(q)]
    expected = np.array(raw) / sum(prior[i] * raw[i] for i in range(q))
    weights = rebalance_weights(prior, lam)
    assert np.allclose(weights, expected)
    assert (prior * weights).sum() == pytest.approx(1.0)
    assert weights[prior.argmin()] == weights.max()  # the rarest colour weighs most
    assert np.allclose(rebalance_weights(np.full(q, 1 / q), lam), 1.0)


def test_prior_smoothing_matches_brute_force():
    prior = np.random.default_rng(1).dirichlet(np.ones(NUM_AB_BINS))
    expected = np.zeros(NUM_AB_BINS)
    for q in range(NUM_AB_BINS):
        for r in range(NUM_AB_BINS):
            expected[q] += prior[r] * np.exp(-((BINS[q] - BINS[r]) ** 2).sum() / (2 * 5.0**2))
    expected /= expected.sum()
    assert np.allclose(smooth_prior(prior, ab_bins(), 5.0), expected)


def test_task_rebalances_with_the_shard_prior():
    prior = np.random.default_rng(2).dirichlet(np.ones(NUM_AB_BINS))
    task = ColorTask(8, 16, ColorHeadConfig(hidden=4, prior_sigma=None, flip=False), ab_prior=prior.tolist())
    assert np.allclose(task.class_weights.numpy(), rebalance_weights(prior, 0.5), rtol=1e-6)
    bins = torch.tensor([[[3, 7]]])
    batch = {
        "l": torch.zeros(1, 1, 4, 8, dtype=torch.uint8),
        "bins": bins,
        "ab": torch.tensor(ab_bins()[[3, 7]].T[None, :, None, :], dtype=torch.int8),
    }
    _, targets = task.prepare(batch, "harmonized", 1)
    assert torch.equal(targets["pixel_weights"], task.class_weights[bins])
    with pytest.raises(ValueError):
        ColorTask(8, 16, ab_prior=[0.5, 0.5])


def brute_force_loss(logits, ab, bins, class_weights, valid, k=5, sigma=5.0):
    """Dense soft targets, cross-entropy minus target entropy, rebalanced, mean over valid pixels."""
    n, q, h, w = logits.shape
    log_probs = torch.log_softmax(logits.double(), dim=1).numpy()
    total, count = 0.0, 0
    for i in range(n):
        if not valid[i]:
            continue
        for y in range(h):
            for x in range(w):
                dist = np.sqrt(((ab[i, :, y, x][None].astype(np.float64) - BINS) ** 2).sum(-1))
                target = np.zeros(q)
                nearest = np.argsort(dist, kind="stable")[:k]
                target[nearest] = np.exp(-(dist[nearest] ** 2) / (2 * sigma**2))
                target /= target.sum()
                entropy = -(target[target > 0] * np.log(target[target > 0])).sum()
                cross_entropy = -(target * log_probs[i, :, y, x]).sum()
                total += class_weights[bins[i, y, x]] * (cross_entropy - entropy)
                count += 1
    return total / count


def test_loss_matches_brute_force_and_skips_grayscale_images():
    rng = np.random.default_rng(3)
    # bin centres plus an offset that avoids ties among the nearest bins: the soft target is unique
    ab = (ab_bins()[rng.integers(0, NUM_AB_BINS, (3, 3, 3))] + [2, 3]).transpose(0, 3, 1, 2).astype(np.int8)
    dist = np.sort(np.sqrt(((ab.transpose(0, 2, 3, 1).reshape(-1, 1, 2) - BINS[None]) ** 2).sum(-1)), axis=1)
    assert (dist[:, 4] < dist[:, 5]).all()
    bins = torch.from_numpy(rng.integers(0, NUM_AB_BINS, (3, 3, 3)))
    class_weights = torch.from_numpy(rng.uniform(0.5, 2.0, NUM_AB_BINS)).float()
    valid = torch.tensor([True, False, True])
    logits = torch.randn(3, NUM_AB_BINS, 3, 3, requires_grad=True)
    indices, weights = soft_encode(torch.from_numpy(ab), soft_encoding_table(5, 5.0))
    loss = color_loss(logits, indices, weights, class_weights[bins], valid)
    expected = brute_force_loss(logits.detach(), ab, bins.numpy(), class_weights.numpy(), valid.tolist())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert logits.grad[1].abs().max() == 0  # the grayscale image contributes nothing
    assert logits.grad[0].abs().max() > 0
    all_gray = color_loss(logits, indices, weights, class_weights[bins], torch.zeros(3, dtype=torch.bool))
    assert all_gray.item() == 0.0


def test_grayscale_detection_follows_zhang_threshold():
    ab = torch.zeros(3, 2, 4, 4, dtype=torch.int8)
    ab[1, 0, 2, 2] = -5
    ab[2, 1, 0, 3] = 6
    assert is_grayscale(ab, 5).tolist() == [True, True, False]
    task = ColorTask(8, 16, ColorHeadConfig(hidden=4))
    batch = {
        "l": torch.zeros(3, 1, 16, 16, dtype=torch.uint8),
        "ab": ab,
        "bins": torch.zeros(3, 4, 4, dtype=torch.long),
    }
    assert task.prepare(batch, "harmonized", 1)[1]["valid"].tolist() == [False, False, True]
    batch["grayscale"] = torch.tensor([False, False, True])  # the shard's flag wins when present
    assert task.prepare(batch, "harmonized", 1)[1]["valid"].tolist() == [True, True, False]


def test_accuracy_counts_nearest_bin_hits_on_colour_images():
    bins = torch.tensor([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    logits = torch.zeros(2, NUM_AB_BINS, 2, 2)
    logits.scatter_(1, bins[:, None], 1.0)
    logits[0, 0, 0, 0] = 5.0  # one miss in image 0
    assert color_accuracy(logits, bins, torch.tensor([True, True])).item() == pytest.approx(7 / 8)
    assert color_accuracy(logits, bins, torch.tensor([True, False])).item() == pytest.approx(3 / 4)
