"""Loading trained models back: the trunk export (``trunk.pt``) and a run's full network (its checkpoint).

``load_trunk(path)`` is what a user takes elsewhere: the ResNet-v2 trunk with its weights, the lasso
combiner (each pretext task's learned row and the per-unit normalisation it mixes), and the network config
(depth, width, input mode), all in eval mode on the CPU::

    import mtssl
    loaded = mtssl.load_trunk("runs/demo/trunk.pt")
    x = loaded.prepare(rgb_uint8_nchw)            # the input the trunk was trained on (L or RGB)
    units = loaded.trunk(x)                       # every block-3 unit's output
    mixed = loaded.lasso(units, "color")          # the colour task's lasso mix

``load_network(run)`` rebuilds the whole multi-task network (every head) from a run's newest checkpoint,
for evaluations that need a head (``mtssl-eval motion``). Both read with ``weights_only=True``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtssl.inputs import image_input, match_channels
from mtssl.model.lasso import LassoCombiner
from mtssl.model.network import MultiTaskNet, NetworkConfig, tuples_of
from mtssl.model.trunk import ResNetV2Trunk, TrunkConfig


@dataclass
class LoadedTrunk:
    """A trained trunk, ready for features: trunk, lasso combiner, network config, training step."""

    trunk: ResNetV2Trunk
    lasso: LassoCombiner
    network: NetworkConfig
    step: int

    @property
    def rows(self) -> list[str]:
        """The lasso rows: one per pretext task the trunk was trained with."""
        return list(self.lasso.row_names)

    def prepare(self, rgb: torch.Tensor) -> torch.Tensor:
        """uint8 RGB (N,3,H,W) -> the trunk's input in its training input mode (L harmonized, RGB native)."""
        return match_channels(image_input(rgb, self.network.input_mode), self.network.channels)

    def to(self, device: torch.device | str) -> LoadedTrunk:
        self.trunk.to(device)
        self.lasso.to(device)
        return self


def trunk_config(network: NetworkConfig) -> TrunkConfig:
    return TrunkConfig(network.depth, network.width, network.channels, network.slim_strides)


def load_trunk(path: str | Path) -> LoadedTrunk:
    """Read ``trunk.pt`` (or a run folder holding one) with ``weights_only=True``; eval mode, CPU."""
    path = Path(path)
    if path.is_dir():
        path = path / "trunk.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no trunk export at {path}: train a run first (mtssl-train writes RUN/trunk.pt)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    network = network_from_json(payload["network"])
    trunk = ResNetV2Trunk(trunk_config(network))
    trunk.load_state_dict(payload["trunk"])
    rows = list(payload["lasso_rows"])
    lasso = LassoCombiner(trunk.num_units, trunk.out_channels, rows, network.lasso)
    lasso.norms.load_state_dict(payload["lasso_norms"])
    if network.lasso:
        with torch.no_grad():
            for row, weights in zip(rows, payload["lasso"], strict=True):
                lasso.alpha[row].copy_(weights)
    trunk.eval()
    lasso.eval()
    return LoadedTrunk(trunk, lasso, network, int(payload.get("step", 0)))


def network_from_json(text: str | dict[str, Any]) -> NetworkConfig:
    """The ``network`` part of a resolved config (JSON text or dict) as a NetworkConfig."""
    resolved = json.loads(text) if isinstance(text, str) else text
    return NetworkConfig(**tuples_of(resolved["network"]))


def load_network(run_or_checkpoint: str | Path) -> tuple[MultiTaskNet, int]:
    """The full network (trunk, lasso, every head) of a run's newest checkpoint, in eval mode; and its step."""
    from mtssl.train.checkpoint import load_checkpoint, load_latest

    path = Path(run_or_checkpoint)
    if path.is_dir():
        found = load_latest(path)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {path}")
        state = found[1]
    else:
        state = load_checkpoint(path)
    net = MultiTaskNet.from_resolved(json.loads(state["network"]))
    net.load_state_dict(state["model"])
    net.eval()
    return net, int(state["step"])
