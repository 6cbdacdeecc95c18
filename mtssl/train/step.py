"""One optimizer step: ``accumulate`` micro-batches (one bundle of every task each), summed, then the update.

The network returns each task's loss and the L1 penalty on the lasso weights (``MultiTaskNet.forward``);
here they are weighted (task-per-rank under DDP, early-stopped tasks) and summed, divided by the number of
micro-batches, and back-propagated one micro-batch at a time, so a step of N micro-batches of B samples
makes the update of one batch of N x B (exactly for losses that are batch means and a trunk without batch
statistics; BatchNorm sees B at a time). Under DDP the gradients are all-reduced only on the last
micro-batch (``no_sync`` on the others).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence

import torch

from mtssl.model import PENALTY, MultiTaskNet
from mtssl.train.state import TrainState

Bundle = Mapping[str, Mapping[str, torch.Tensor]]


def total_loss(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float] | None = None) -> torch.Tensor:
    """The L1 penalty plus every task's loss times its weight (1 when absent), in ``terms``' order."""
    total = terms[PENALTY]
    for task, loss in terms.items():
        if task != PENALTY:
            total = total + (loss if weights is None else weights.get(task, 1.0) * loss)
    return total


def train_step(
    model: torch.nn.Module,
    state: TrainState,
    micro_batches: Sequence[Bundle],
    weights: Mapping[str, float],
    frozen: Collection[str] = (),
    clip_grad: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward and backward over ``micro_batches``, then one optimizer step; returns the step's loss and
    metrics (means over the micro-batches). ``model`` is the network, or its DDP wrapper; ``frozen`` tasks
    (early-stopped) get weight 0 and no gradient."""
    count = len(micro_batches)
    weights = {**weights, **dict.fromkeys(frozen, 0.0)}
    loss_sum: torch.Tensor | None = None
    metric_sums: dict[str, torch.Tensor] = {}
    for i, batches in enumerate(micro_batches):
        syncing = i == count - 1 or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if syncing else model.no_sync():
            terms, metrics = model(batches, state.generator, frozen)
            loss = total_loss(terms, weights) / count
            loss.backward()
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
        for key, value in metrics.items():
            metric_sums[key] = metric_sums[key] + value if key in metric_sums else value
    if frozen:
        freeze_grads(state.net, frozen)
    if clip_grad:
        torch.nn.utils.clip_grad_norm_(state.net.parameters(), clip_grad)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    return loss_sum, {key: value / count for key, value in metric_sums.items()}


def freeze_grads(net: MultiTaskNet, tasks: Collection[str]) -> None:
    """No gradient for the tasks' heads and lasso rows, so the optimizer skips them (no momentum, no decay)."""
    for task in tasks:
        params = [*net.tasks[task].parameters()]
        if task in net.lasso.alpha:
            params.append(net.lasso.alpha[task])
        for param in params:
            param.grad = None
