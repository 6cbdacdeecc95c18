"""What a run is at a step: the network, the optimizer, the early-stop watches, the RNG states and the step.

One object with one ``state_dict()`` / ``load_state_dict()``, so a checkpoint is written and read in one
place (``mtssl.train.checkpoint`` adds the run's facts: config, network, manifests, versions). Everything
in it is a tensor or plain data: checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mtssl.model import MultiTaskNet
from mtssl.train import checkpoint as ckpt
from mtssl.train.early_stop import EarlyStop


@dataclass
class TrainState:
    net: MultiTaskNet
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # the on-device augmentations' generator
    stopper: EarlyStop
    step: int = 0  # optimizer steps done

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": ckpt.rng_state(self.generator),
            "early_stop": self.stopper.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"], self.generator)
        self.stopper.load_state_dict(state.get("early_stop", {}))
        self.step = int(state["step"])

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def make_optimizer(
    net: torch.nn.Module, name: str, lr: float, weight_decay: float, momentum: float, rmsprop_decay: float, eps: float
) -> torch.optim.Optimizer:
    """RMSProp (the paper's), SGD or AdamW; weight decay on conv and linear weights only (not on biases,
    normalisation or lasso weights, which have their own L1 penalty)."""
    decay = [p for p in net.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=rmsprop_decay, eps=eps, momentum=momentum)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.AdamW(groups, lr=lr, eps=eps)
