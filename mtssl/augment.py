"""Fresh randomness at training time: batched random crops and flips on the device.

A shard stores each sample's expensive work once (decode, resize, Lab, bins, views, masks), and with it
one random draw. On a small set the network then memorises the draws (method.md, "Fresh randomness at
training time"), so the tasks draw cheap randomness per step here: a random window of every stored
image (centred when not training, so validation is deterministic) and a random horizontal flip. All
functions take (N, C, H, W) tensors on any device and a ``torch.Generator`` on that device.
"""

from __future__ import annotations

import torch


def crop_offsets(
    n: int, room: int, device: torch.device, generator: torch.Generator | None, random: bool
) -> torch.Tensor:
    """(n,) window offsets in [0, room]: uniform when ``random``, else the centre."""
    if not random or room == 0:
        return torch.full((n,), room // 2, device=device, dtype=torch.long)
    return torch.randint(0, room + 1, (n,), device=device, generator=generator)


def crop_at(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, side: int) -> torch.Tensor:
    """Per-sample ``side`` x ``side`` windows of (N,C,H,W) at top-left corners (ys, xs), one gather."""
    span = torch.arange(side, device=x.device)
    rows = (ys[:, None] + span)[:, None, :, None]  # (N,1,side,1)
    cols = (xs[:, None] + span)[:, None, None, :]  # (N,1,1,side)
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[batch, channel, rows, cols]


def random_crop(
    x: torch.Tensor, side: int | None, generator: torch.Generator | None = None, random: bool = True
) -> torch.Tensor:
    """A random (or, with ``random=False``, the central) ``side`` window of every sample; None keeps all."""
    height, width = x.shape[-2:]
    if side is None or (side >= height and side >= width):
        return x
    if side > min(height, width):
        raise ValueError(f"crop {side} is larger than the stored {height}x{width} images")
    n = x.shape[0]
    ys = crop_offsets(n, height - side, x.device, generator, random)
    xs = crop_offsets(n, width - side, x.device, generator, random)
    return crop_at(x, ys, xs, side)


def flip_mask(n: int, device: torch.device, generator: torch.Generator | None, random: bool) -> torch.Tensor:
    """(n,) bool: which samples to mirror (half of them at random; none when not ``random``)."""
    if not random:
        return torch.zeros(n, dtype=torch.bool, device=device)
    return torch.rand(n, device=device, generator=generator) < 0.5


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the samples of (N, ..., W) where ``mask`` is True."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    return torch.where(mask.view(shape), x.flip(-1), x)
