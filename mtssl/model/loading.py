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


class DamagedWeights(ValueError):
    """A trunk export or checkpoint that cannot be read (truncated, overwritten, not written by mtssl)."""


def read_weights(path: Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU; :class:`DamagedWeights` (one line) when the file
    cannot be read. torch reports a damaged file as RuntimeError, EOFError, UnpicklingError and others."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DamagedWeights(f"{path} cannot be read, it is truncated or damaged ({reason}); {REWRITE}") from None
    if not isinstance(payload, dict):
        raise DamagedWeights(f"{path} is not a file mtssl wrote (it holds a {type(payload).__name__}); {REWRITE}")
    return payload


REWRITE = "copy it again, or resume its run for more steps to write it anew (mtssl-train --out RUN --resume --steps N)"


def load_trunk(path: str | Path) -> LoadedTrunk:
    """Read ``trunk.pt`` (or a run folder holding one) with ``weights_only=True``; eval mode, CPU.
    Raises :class:`DamagedWeights` (one line) for a file that cannot be read or is not a trunk export."""
    path = Path(path)
    if path.is_dir():
        path = path / "trunk.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no trunk export at {path}: train a run first (mtssl-train writes RUN/trunk.pt)")
    payload = read_weights(path)
    try:
        return _trunk_from(payload)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DamagedWeights(f"{path} is not a trunk export mtssl can load ({reason}); {REWRITE}") from None


def _trunk_from(payload: dict[str, Any]) -> LoadedTrunk:
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
    from mtssl.train.checkpoint import DamagedCheckpoints, load_latest

    path = Path(run_or_checkpoint)
    if path.is_dir():
        try:
            found = load_latest(path)
        except DamagedCheckpoints as exc:
            raise DamagedWeights(str(exc)) from None
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {path}")
        state = found[1]
    else:
        state = read_weights(path)
    net = MultiTaskNet.from_resolved(json.loads(state["network"]))
    net.load_state_dict(state["model"])
    net.eval()
    return net, int(state["step"])
