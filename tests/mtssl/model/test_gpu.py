"""CUDA paths: bf16 autocast and channels-last. Skipped where no GPU is present."""

import pytest
import torch

from mtssl.train.step import total_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

TASKS = ("relpos", "color", "exemplar", "motion")


def to_cuda(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.cuda(non_blocking=True) for key, value in batch.items()}


@pytest.mark.parametrize("mode", ["harmonized", "native"])
def test_bf16_channels_last_step_matches_fp32(tiny_net, make_batch, mode):
    batches = {task: make_batch(task, n=4, size=64) for task in TASKS}
    fast = tiny_net(input_mode=mode).to_device("cuda")
    exact = tiny_net(input_mode=mode, amp=False, channels_last=False).cuda()
    exact.load_state_dict(fast.state_dict())
    assert fast.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    generator = torch.Generator(device="cuda")
    terms, metrics = fast({t: to_cuda(b) for t, b in batches.items()}, generator.manual_seed(0))
    _, ref_metrics = exact({t: to_cuda(b) for t, b in batches.items()}, generator.manual_seed(0))
    total = total_loss(terms)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    for task in TASKS:
        assert metrics[f"{task}_loss"].item() == pytest.approx(ref_metrics[f"{task}_loss"].item(), rel=0.05, abs=0.02)
    total.backward()
    grads = [p.grad for p in fast.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_eval_row_added_after_moving_lives_on_the_gpu(tiny_net):
    net = tiny_net(("motion",)).to_device("cuda")
    row = net.add_eval_row("probe")
    assert row.is_cuda
    assert net.features(torch.randn(2, 1, 32, 32, device="cuda"), "probe").is_cuda
