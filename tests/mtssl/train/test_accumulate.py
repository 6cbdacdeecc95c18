"""--accumulate N: N micro-batches of B make the update of one batch of N x B; a real run trains with it."""

from __future__ import annotations

from pathlib import Path

import torch

from mtssl.train.early_stop import EarlyStop
from mtssl.train.logging import LOG_FILE, read_log
from mtssl.train.loop import train
from mtssl.train.state import TrainState, make_optimizer
from mtssl.train.step import train_step


def state_of(net) -> TrainState:
    optimizer = make_optimizer(net, "rmsprop", 1e-3, 1e-4, 0.9, 0.9, 1e-3)
    return TrainState(net, optimizer, torch.Generator().manual_seed(0), EarlyStop(("rotation",), 0, 0.2))


def test_two_micro_batches_make_the_update_of_one_batch_twice_as_large(tiny_net, make_batch):
    """Rotation (a batch-mean loss, no random draws in eval mode) on a trunk in eval mode (no batch
    statistics): the summed gradients of the halves, each divided by 2, are the whole batch's."""
    batch = make_batch("rotation", n=8, size=32, seed=3)
    halves = [{key: value[:4] for key, value in batch.items()}, {key: value[4:] for key, value in batch.items()}]
    whole_net = tiny_net(("rotation",), augment=False).eval()
    split_net = tiny_net(("rotation",), augment=False).eval()
    split_net.load_state_dict(whole_net.state_dict())
    whole, split = state_of(whole_net), state_of(split_net)
    before = [p.detach().clone() for p in whole_net.parameters()]
    whole_loss, _ = train_step(whole_net, whole, [{"rotation": batch}], {})
    split_loss, _ = train_step(split_net, split, [{"rotation": h} for h in halves], {})
    assert whole.step == split.step == 1
    assert torch.allclose(whole_loss, split_loss, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(whole_net.named_parameters(), split_net.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name
    assert any(not torch.equal(p, q) for p, q in zip(whole_net.parameters(), before, strict=True))


def test_one_micro_batch_differs_from_two(tiny_net, make_batch):
    """The check above can fail: one half alone is another update."""
    batch = make_batch("rotation", n=8, size=32, seed=3)
    one_net = tiny_net(("rotation",), augment=False).eval()
    two_net = tiny_net(("rotation",), augment=False).eval()
    two_net.load_state_dict(one_net.state_dict())
    train_step(one_net, state_of(one_net), [{"rotation": {k: v[:4] for k, v in batch.items()}}], {})
    train_step(two_net, state_of(two_net), [{"rotation": batch}], {})
    pairs = zip(one_net.parameters(), two_net.parameters(), strict=True)
    assert any(not torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in pairs)


def test_a_run_with_accumulation_trains_and_counts_every_sample(tiny_config):
    cfg = tiny_config(steps=4, save_every=4, accumulate=2, tasks=("rotation", "color"), val_shards=0)
    train(cfg)
    records = [r for r in read_log(Path(cfg.out) / LOG_FILE) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    for r in records:  # samples/s counts both micro-batches: twice the batch over the step's time
        assert abs(r["rotation_samples_per_s"] - 2 * cfg.batch_size / r["step_s"]) <= 0.02 * r["rotation_samples_per_s"]
