"""Input modes: stored uint8 samples -> float tensors ready for the trunk, as cheap per-pixel tensor ops.

Everything here runs on whatever device the batch is on (the GPU in training), batched, with no Python
loop over pixels. Two modes (src: method.md, "Input harmonization"):

- ``harmonized``: every task sees the L channel (the trunk has one input channel);
- ``native``: relative position sees colour-dropped RGB patches, colorization sees L, exemplar and motion
  see RGB (the trunk has three input channels; L is repeated over them).

Normalisation:

- RGB: 0-255 minus the ImageNet mean ``IMAGENET_MEAN`` (src: the released model's input convention).
- L: the stored ``L8 = L * 255 / 100`` minus 127.5, i.e. Zhang et al.'s ``L - 50`` (src: their released
  colorization model centres L at 50) expressed in the same 0-255 units as the RGB input.
- A task may normalise its own way with the per-sample tools below (``rms_normalize``, ``color_drop``,
  ``random_downsample``), its amounts its own: relative position does (``mtssl.tasks.relpos.relpos_input``).

Batch layout (what the trainer hands over, see :func:`batch_from_samples`), one key per entry of the
contract's field table (``mtssl.contract.fields``, which gives each key's dtype and layout): images NCHW
uint8 (``rgb`` (N,3,H,W), ``l`` (N,1,H,W), ``mask`` (N,1,H,W) 0/255), ``bins`` (N,h,w) int64, ``ab``
(N,2,h,w) int8, ``grayscale`` (N,) bool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtssl.contract import FIELD_TABLE, FIELDS_BY_NAME, Field, Layout

MODES = ("harmonized", "native")
IMAGENET_MEAN = (123.68, 116.779, 103.939)  # src: released model, 0-255 RGB minus this mean
SRGB_TO_Y = (0.212671, 0.715160, 0.072169)  # linear sRGB -> CIE Y, D65 (the weights OpenCV uses)
LAB_EPSILON, LAB_KAPPA = 0.008856, 903.3  # CIE's linear segment of L* for dark colours
L_MEAN = 127.5  # src: Zhang et al. subtract 50 from L in 0-100; 50 * 255 / 100 in stored L8 units

# Contract field -> batch key, for the fields with a member of their own (a view of the field table).
BATCH_KEYS = {f.name: f.key for f in FIELD_TABLE if f.layout is not Layout.JSON_VALUE}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"input mode must be one of {MODES}, got {mode!r}")
    return mode


def input_channels(mode: str) -> int:
    """Trunk input channels for a mode: 1 (L) when harmonized, 3 (RGB) when native."""
    return 1 if check_mode(mode) == "harmonized" else 3


def rgb_input(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N,3,H,W) -> float, 0-255 minus the ImageNet mean."""
    mean = torch.tensor(IMAGENET_MEAN, device=rgb.device).view(1, 3, 1, 1)
    return rgb.float() - mean


def l_input(l8: torch.Tensor) -> torch.Tensor:
    """uint8 L8 (N,1,H,W) -> float, L8 minus 127.5."""
    return l8.float() - L_MEAN


def rgb_to_l8(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 sRGB (N,3,H,W) -> L8 (N,1,H,W) float on the same device: CIE L* (D65) scaled to 0-255 and
    rounded, the contract's L convention (OpenCV's 8-bit Lab; equal to it within one level).

    The RGB tasks store only colour; harmonized mode reads this per-pixel conversion of it.
    """
    c = rgb.float() / 255.0
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    weights = torch.tensor(SRGB_TO_Y, device=rgb.device, dtype=linear.dtype).view(1, 3, 1, 1)
    y = (linear * weights).sum(dim=1, keepdim=True)
    f = torch.where(y > LAB_EPSILON, y.clamp_min(LAB_EPSILON) ** (1 / 3), LAB_KAPPA / 116 * y + 16 / 116)
    return torch.round((116 * f - 16) * 2.55).clamp(0, 255)


def image_input(rgb: torch.Tensor, mode: str) -> torch.Tensor:
    """A stored uint8 RGB image (N,3,H,W) as the trunk sees it: L (1 channel) harmonized, RGB native."""
    return l_input(rgb_to_l8(rgb)) if check_mode(mode) == "harmonized" else rgb_input(rgb)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat a 1-channel input over 3 channels when the trunk takes RGB; refuse to drop colour."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1)
    raise ValueError(f"cannot feed a {x.shape[1]}-channel input to a {channels}-channel trunk")


def rms_normalize(x: torch.Tensor, scale: float, eps: float = 1e-6) -> torch.Tensor:
    """Divide each sample (over C,H,W) by its root mean square and multiply by ``scale``."""
    rms = x.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return x / rms.clamp_min(eps) * scale


def color_drop(rgb: torch.Tensor, noise: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep one random channel per sample (mean removed); replace the other two by uniform noise.

    ``rgb`` is float (N,3,H,W) in 0-255 units; the noise is uniform in ``[-noise/2, noise/2]``
    (src: deepcontext prep_image, against chromatic aberration; Doersch et al. 2015, Sec. 3).
    """
    n = rgb.shape[0]
    keep = torch.randint(0, 3, (n,), device=rgb.device, generator=generator)
    out = (torch.rand(rgb.shape, device=rgb.device, generator=generator) - 0.5) * noise
    chosen = rgb[torch.arange(n, device=rgb.device), keep]
    out[torch.arange(n, device=rgb.device), keep] = chosen - chosen.mean(dim=(1, 2), keepdim=True)
    return out


def random_downsample(
    x: torch.Tensor, prob: float, min_side: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """With probability ``prob`` per sample, shrink to a random side in [min_side, P-1] and resize back.

    The side is drawn so the pixel count is uniform (src: deepcontext prep_image: prob .33, as little as
    100 pixels). ``x`` is float (N,C,P,P); area averaging down, bilinear up; one resize pair per distinct
    side, so at most P - min_side pairs per call whatever the batch size.
    """
    if prob <= 0:
        return x
    n, size = x.shape[0], x.shape[-1]
    chosen = torch.rand(n, generator=generator, device=x.device) < prob
    areas = torch.rand(n, generator=generator, device=x.device) * ((size - 1) ** 2 - min_side**2)
    sides = (areas + min_side**2).sqrt().long()
    out = x.clone()
    for side in sides[chosen].unique().tolist():
        index = torch.nonzero(chosen & (sides == side)).flatten()
        small = F.interpolate(x[index], size=(side, side), mode="area")
        out[index] = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out


def split_grid(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(N, C, rows*h, cols*w) -> (N, rows*cols, C, h, w), reading order (as ``contract.untile``)."""
    n, c, height, width = tiles.shape
    h, w = height // rows, width // cols
    parts = tiles.reshape(n, c, rows, h, cols, w).permute(0, 2, 4, 1, 3, 5)
    return parts.reshape(n, rows * cols, c, h, w)


def _collate(field: Field, values: list[Any]) -> torch.Tensor:
    """One field's decoded values of a batch -> its batch tensor, in the field's layout and dtype."""
    if field.layout is Layout.JSON_VALUE:
        return torch.from_numpy(np.array([v[field.key] for v in values]).astype(field.dtype))
    batch = torch.from_numpy(np.stack(values))
    if field.layout is Layout.CHANNELS_LAST or (field.layout is Layout.IMAGE and field.colour):
        batch = batch.permute(0, 3, 1, 2).contiguous()  # (N,H,W,C) -> (N,C,H,W)
    elif field.layout is Layout.IMAGE:
        batch = batch.unsqueeze(1)  # (N,H,W) -> (N,1,H,W)
    return batch.to(getattr(torch, field.dtype))  # bins: uint16 -> int64


def batch_from_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Collate decoded samples (``contract.decode_sample`` output) into the batch layout above (CPU): every
    field of the table the first sample holds (a json value only when its json has it)."""
    first = samples[0]
    held = [f for name, fields in FIELDS_BY_NAME.items() if name in first for f in fields]
    held = [f for f in held if f.layout is not Layout.JSON_VALUE or f.key in first[f.name]]
    return {f.key: _collate(f, [s[f.name] for s in samples]) for f in held}
