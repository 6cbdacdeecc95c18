"""The multi-task network: ResNet-v2 trunk, lasso combination of block-3 units, one head per task.

Per task: stored uint8 batch -> ``task.prepare`` (input mode) -> trunk -> the task's lasso row -> head ->
``task.loss_and_metric``. ``forward`` runs every task of a step, each on its own mini-batch, and returns
each task's loss and the L1 penalty on the lasso weights; the trainer sums them (src: method.md,
"Training": each task's loss on its own mini-batch, no hand-set loss weights). On CUDA the trunk and heads
run under bf16 autocast in channels_last; losses are computed in fp32. On CPU everything is fp32.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mtssl.inputs import check_mode, input_channels
from mtssl.model.lasso import LassoCombiner
from mtssl.model.trunk import ResNetV2Trunk, TrunkConfig
from mtssl.tasks import TASKS
from mtssl.tasks.base import Batch, Task

PENALTY = "lasso_penalty"  # forward's term (and metric) for the L1 penalty on the lasso weights


@dataclass(frozen=True)
class NetworkConfig:
    """Shape and switches of the multi-task network.

    Attributes:
        tasks: pretext tasks, each with a head and a lasso row (src: the paper combines all four).
        depth: trunk depth, 18, 50 or 101 (src: the paper's trunk is ResNet-v2-101).
        width: root width of the trunk (src: slim, 64); small values make tiny test models.
        input_mode: ``harmonized`` (L for every task) or ``native`` (src: method.md, both are offered for
            the ablation; harmonized is our default).
        lasso: learn the per-task mix of block-3 units; False is the naive common trunk.
        l1: coefficient of the L1 penalty on the lasso weights (ours: the paper gives no value; at
            initialisation the data gradient on a lasso weight is of order 1e-3, so 1e-4 prunes slowly
            without starving the heads; tune it per run).
        slim_strides: slim's stride layout (block 3's last unit at stride 32; needs ``lasso=False``).
        in_channels: trunk input channels; None derives it from the mode (1 harmonized, 3 native).
        augment: tasks draw fresh crops and flips per training step (``mtssl.augment``; the tasks' ``crop`` and
            ``flip`` options say which); False trains on the stored samples as they are.
        amp: bf16 autocast on CUDA (ignored on CPU).
        channels_last: channels-last memory format on CUDA (ignored on CPU).
    """

    tasks: tuple[str, ...] = tuple(TASKS)
    depth: int = 101
    width: int = 64
    input_mode: str = "harmonized"
    lasso: bool = True
    l1: float = 1e-4
    slim_strides: bool = False
    in_channels: int | None = None
    augment: bool = True
    amp: bool = True
    channels_last: bool = True

    def __post_init__(self) -> None:
        check_mode(self.input_mode)
        unknown = set(self.tasks) - set(TASKS)
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {sorted(TASKS)}, got {self.tasks}")
        if self.lasso and self.slim_strides:
            raise ValueError(
                "the lasso mixes block-3 units, which need one size, but slim_strides=True puts block 3's "
                "last unit at stride 32: use slim_strides=False (block 3 at stride 16) or lasso=False"
            )
        if self.input_mode == "native" and self.in_channels == 1:
            raise ValueError("native mode feeds RGB to some tasks: the trunk needs 3 input channels")

    @property
    def channels(self) -> int:
        return self.in_channels if self.in_channels is not None else input_channels(self.input_mode)


def tuples_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; frozen configs want them back as tuples."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in config.items()}


def autocast(device: torch.device, enabled: bool = True) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA, a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


class MultiTaskNet(nn.Module):
    """Trunk + lasso + heads.

    Args:
        config: network shape and switches.
        task_configs: optional config dataclass per task name (paper defaults otherwise).
        task_inputs: per task name, the keyword arguments its constructor takes from its shard set's
            manifest (``Task.manifest_inputs``: the colour set's ab prior); none gives each task its defaults.
    """

    def __init__(
        self,
        config: NetworkConfig,
        task_configs: Mapping[str, Any] | None = None,
        task_inputs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        trunk_config = TrunkConfig(config.depth, config.width, config.channels, config.slim_strides)
        self.trunk = ResNetV2Trunk(trunk_config)
        self.lasso = LassoCombiner(self.trunk.num_units, self.trunk.out_channels, config.tasks, config.lasso)
        task_configs, task_inputs = task_configs or {}, task_inputs or {}
        self.tasks = nn.ModuleDict(
            {name: self._build_task(name, task_configs.get(name), task_inputs.get(name, {})) for name in config.tasks}
        )

    @classmethod
    def from_resolved(cls, resolved: Mapping[str, Any]) -> MultiTaskNet:
        """Rebuild from :meth:`resolved_config` output (e.g. read back from a checkpoint's JSON)."""
        network = NetworkConfig(**tuples_of(resolved["network"]))
        tasks = {name: TASKS[name].config_from_plain(tuples_of(cfg)) for name, cfg in resolved["tasks"].items()}
        return cls(network, tasks)

    def resolved_config(self) -> dict[str, Any]:
        """Network and task configs as plain data, for checkpoints and logs."""
        tasks = {name: asdict(task.config) for name, task in self.tasks.items()}
        return {"network": asdict(self.config), "tasks": tasks}

    def _build_task(self, name: str, task_config: Any, inputs: Mapping[str, Any]) -> Task:
        task = TASKS[name](self.trunk.out_channels, self.trunk.stride, task_config, **inputs)
        task.augment = self.config.augment
        return task

    def keys(self, task: str) -> tuple[str, ...]:
        """Batch keys the task reads in this network's input mode."""
        return self.tasks[task].keys(self.config.input_mode)

    def features(self, x: torch.Tensor, row: str) -> torch.Tensor:
        """Trunk, then the lasso row ``row`` (a task name or an added evaluation row)."""
        return self.lasso(self.trunk(x), row)

    def task_step(
        self, task: str, batch: Batch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One task on its mini-batch of stored uint8 tensors: (loss, metrics), without the L1 penalty."""
        head = self.tasks[task]
        inputs, targets = head.prepare(batch, self.config.input_mode, self.config.channels, generator)
        if inputs.is_cuda and self.config.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(inputs.device, self.config.amp):
            outputs = head(self.features(inputs, task))
        loss, metrics = head.loss_and_metric(outputs, targets)
        return loss, {f"{task}_loss": loss.detach(), **metrics}

    def forward(
        self,
        batches: Mapping[str, Batch],
        generator: torch.Generator | None = None,
        frozen: Collection[str] = (),
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Every task in ``batches`` on its own mini-batch: ``(terms, metrics)``, where ``terms`` holds the L1
        penalty on the lasso weights (``PENALTY``) and then each task's loss, in the batches' order. The
        trainer weights and sums them (``mtssl.train.step.total_loss``). A ``frozen`` task's lasso row (an
        early-stopped task) is left out of the penalty, so the row keeps its weights."""
        penalty = self.lasso_penalty(exclude=frozen)
        terms, metrics = {PENALTY: penalty}, {PENALTY: penalty.detach()}
        for task, batch in batches.items():
            terms[task], task_metrics = self.task_step(task, batch, generator)
            metrics.update(task_metrics)
        return terms, metrics

    def lasso_penalty(self, exclude: Collection[str] = ()) -> torch.Tensor:
        """``l1 * sum |alpha|`` over the pretext-task rows but ``exclude`` (zero when the lasso is off)."""
        return self.lasso.penalty(self.config.l1, rows=[t for t in self.config.tasks if t not in exclude])

    def lasso_weights(self) -> torch.Tensor:
        """The (tasks x block-3 units) alpha matrix, detached, for logs and heatmaps."""
        return self.lasso.weights(self.config.tasks)

    def add_eval_row(self, name: str) -> nn.Parameter | None:
        """A new naively initialised lasso row for a downstream task; read it with ``features(x, name)``."""
        return self.lasso.add_row(name)

    def to_device(self, device: torch.device | str) -> MultiTaskNet:
        """Move to ``device``; on CUDA also switch to channels-last when configured."""
        device = torch.device(device)
        self.to(device)
        if device.type == "cuda" and self.config.channels_last:
            self.to(memory_format=torch.channels_last)
        return self
