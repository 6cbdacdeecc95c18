"""Lasso layer combination (Doersch & Zisserman 2017, "Separating features via lasso").

Each task (a *row*) reads ``sum_m alpha[row, m] * candidate_m`` over the block-3 units ``m``; an L1
penalty on ``alpha`` makes each task concentrate on few layers. Rows start at the naive network: weight 1
on the last unit, 0 elsewhere (src: method.md, "Lasso layer combination"). With ``enabled=False`` every
row is fixed to that naive choice (the common-trunk ablation) and there is nothing to learn or penalise.

Candidates. Raw ResNet-v2 unit outputs are un-normalised sums whose scale grows with depth, so each unit
output goes through its own ``BatchNorm2d(affine=False)`` and a ReLU (slim's "postnorm", applied per
unit) before mixing. The BN has no learned scale on purpose: ``alpha`` is then the only per-unit scale,
and the heads contain no normalisation layer, so the network cannot dodge the L1 penalty by shrinking
``alpha`` and rescaling behind a normalisation (a head with BN would be invariant to ``alpha``'s scale).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def naive_row(num_units: int) -> torch.Tensor:
    """Lasso weights that reproduce the naive network: the last unit alone."""
    row = torch.zeros(num_units)
    row[-1] = 1.0
    return row


def l1_penalty(rows: Iterable[torch.Tensor], coefficient: float) -> torch.Tensor:
    """``coefficient * sum |alpha|`` over the given (non-empty) rows (pure function)."""
    return coefficient * torch.stack([row.abs().sum() for row in rows]).sum()


def check_equal_sizes(units: Sequence[torch.Tensor]) -> None:
    """Raise a clear error when the candidate layers cannot be summed."""
    shapes = {tuple(u.shape) for u in units}
    if len(shapes) > 1:
        raise ValueError(
            f"the lasso mixes block-3 unit outputs, which must all have one shape; got {sorted(shapes)}. "
            "With slim_strides=True block 3's last unit is at stride 32: use slim_strides=False "
            "(block 3 at stride 16 throughout) or turn the lasso off."
        )


class LassoCombiner(nn.Module):
    """Per-row learned mix of the block-3 unit outputs.

    Args:
        num_units: number of candidate layers (block-3 units).
        channels: channels of each candidate.
        rows: one row per pretext task (names).
        enabled: learn the mix; when False every row reads the last unit (naive network).
    """

    def __init__(self, num_units: int, channels: int, rows: Sequence[str], enabled: bool = True) -> None:
        super().__init__()
        self.num_units = num_units
        self.enabled = enabled
        normalised = num_units if enabled else 1
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels, affine=False) for _ in range(normalised))
        self.alpha = nn.ParameterDict()
        self.row_names: list[str] = []
        for row in rows:
            self.add_row(row)

    def add_row(self, name: str) -> nn.Parameter | None:
        """Add a naively initialised row (e.g. for an evaluation task); returns its parameter, if any."""
        if name in self.row_names:
            raise ValueError(f"lasso row {name!r} exists")
        self.row_names.append(name)
        if not self.enabled:
            return None
        device = self.norms[0].running_mean.device
        self.alpha[name] = nn.Parameter(naive_row(self.num_units).to(device))
        return self.alpha[name]

    def candidate(self, unit: torch.Tensor, index: int) -> torch.Tensor:
        """Normalised candidate layer ``index`` (negative indices count from the end)."""
        norm = self.norms[index % len(self.norms)] if self.enabled else self.norms[0]
        return F.relu(norm(unit))

    def forward(self, units: Sequence[torch.Tensor], row: str) -> torch.Tensor:
        if row not in self.row_names:
            raise KeyError(f"no lasso row {row!r}; rows are {self.row_names}")
        if len(units) != self.num_units:
            raise ValueError(f"expected {self.num_units} unit outputs, got {len(units)}")
        if not self.enabled:
            return self.candidate(units[-1], -1)
        check_equal_sizes(units)
        alpha = self.alpha[row]
        mixed = self.candidate(units[0], 0) * alpha[0]
        for index in range(1, self.num_units):
            mixed = mixed + self.candidate(units[index], index) * alpha[index]
        return mixed

    def weights(self, rows: Sequence[str] | None = None) -> torch.Tensor:
        """The (rows x units) alpha matrix, detached (the naive one when the lasso is off)."""
        names = list(rows) if rows is not None else self.row_names
        if not self.enabled:
            return torch.stack([naive_row(self.num_units) for _ in names]) if names else torch.zeros(0)
        return torch.stack([self.alpha[name].detach() for name in names])

    def penalty(self, coefficient: float, rows: Sequence[str] | None = None) -> torch.Tensor:
        """L1 penalty on the given rows (default: all rows); zero when the lasso is off."""
        names = list(rows) if rows is not None else self.row_names
        if not self.enabled or not names:
            return torch.zeros((), device=self.norms[0].running_mean.device)
        return l1_penalty((self.alpha[name] for name in names), coefficient)
