"""Pre-activation ResNet (v2) trunk kept through block 3, in plain torch.

Follows slim's ``resnet_v2`` (He et al., "Identity Mappings in Deep Residual Networks", 2016), which the
authors' released model uses (src: method.md, "Trunk"):

- root: 7x7/2 convolution with bias and no normalisation, then a 3x3/2 max pool with TF "SAME" padding;
- pre-activation units: ``BN -> ReLU`` on the unit input feeds both the residual branch and, when the
  channel count changes, a 1x1 projection shortcut; otherwise the shortcut is the (subsampled) raw input;
- bottleneck branch ``1x1 -> 3x3(stride) -> 1x1`` with BN + ReLU after the first two and a plain biased
  last convolution (the unit output is not normalised: the next unit's pre-activation does that);
- each block's stride 2 sits in the block's **last** unit (src: slim ``resnet_v2_block``).

Block 4 is dropped. By default block 3 has no stride at all, so every block-3 unit is at stride 16 and the
lasso can mix them; ``slim_strides=True`` restores slim's layout (block 3's last unit at stride 32), which
is what the released checkpoint needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Units per block through block 3 (src: slim resnet_v2_50 / resnet_v2_101 block lists; 18 = He et al.'s
# two-unit basic blocks). 101 = 3 + 4 + 23, 50 = 3 + 4 + 6.
UNITS: dict[int, tuple[int, int, int]] = {18: (2, 2, 2), 50: (3, 4, 6), 101: (3, 4, 23)}
BOTTLENECK_EXPANSION = 4  # src: slim resnet_v2_block, depth = base_depth * 4


@dataclass(frozen=True)
class TrunkConfig:
    """Shape of the trunk.

    Attributes:
        depth: 18 (basic units), 50 or 101 (bottleneck units).
        width: channels of the root convolution and base depth of block 1 (src: slim uses 64). Block b has
            base depth ``width * 2**(b-1)``; use e.g. 4-16 for tiny test models.
        in_channels: 1 for L input (harmonized), 3 for RGB.
        slim_strides: put a stride 2 in block 3's last unit as slim does (output stride 32 instead of 16).
    """

    depth: int = 101
    width: int = 64
    in_channels: int = 1
    slim_strides: bool = False

    def __post_init__(self) -> None:
        if self.depth not in UNITS:
            raise ValueError(f"depth must be one of {sorted(UNITS)}, got {self.depth}")
        if self.width < 1 or self.in_channels not in (1, 3):
            raise ValueError(f"need width >= 1 and in_channels 1 or 3, got {self.width}, {self.in_channels}")

    @property
    def bottleneck(self) -> bool:
        return self.depth >= 50

    def block_depth(self, block: int) -> int:
        """Output channels of block ``block`` (0-based)."""
        base = self.width * 2**block
        return base * BOTTLENECK_EXPANSION if self.bottleneck else base


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad H and W as TensorFlow's ``SAME`` does (extra pixel at the bottom/right)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max(kernel - (size % stride or stride), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class BottleneckV2(nn.Module):
    """Slim's ``bottleneck`` unit of resnet_v2 (pre-activation)."""

    def __init__(self, in_channels: int, depth: int, bottleneck: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.preact = nn.BatchNorm2d(in_channels)
        self.shortcut = nn.Conv2d(in_channels, depth, 1, stride=stride) if in_channels != depth else None
        self.conv1 = nn.Conv2d(in_channels, bottleneck, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(bottleneck)
        self.conv2 = nn.Conv2d(bottleneck, bottleneck, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(bottleneck)
        self.conv3 = nn.Conv2d(bottleneck, depth, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.preact(x))
        shortcut = self.shortcut(pre) if self.shortcut is not None else x[..., :: self.stride, :: self.stride]
        out = F.relu(self.bn1(self.conv1(pre)))
        out = F.relu(self.bn2(self.conv2(out)))
        return shortcut + self.conv3(out)


class BasicV2(nn.Module):
    """Pre-activation basic unit (two 3x3 convolutions) for the 18-layer trunk, laid out like slim's."""

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.preact = nn.BatchNorm2d(in_channels)
        self.shortcut = nn.Conv2d(in_channels, depth, 1, stride=stride) if in_channels != depth else None
        self.conv1 = nn.Conv2d(in_channels, depth, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(depth)
        self.conv2 = nn.Conv2d(depth, depth, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.preact(x))
        shortcut = self.shortcut(pre) if self.shortcut is not None else x[..., :: self.stride, :: self.stride]
        out = F.relu(self.bn1(self.conv1(pre)))
        return shortcut + self.conv2(out)


class ResNetV2Trunk(nn.Module):
    """ResNet-v2 through block 3. ``forward`` returns the output of every block-3 unit, in order."""

    def __init__(self, config: TrunkConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv2d(config.in_channels, config.width, 7, stride=2, padding=3)
        in_channels = config.width
        blocks = []
        for index, num_units in enumerate(UNITS[config.depth]):
            stride = 2 if index < 2 or config.slim_strides else 1
            blocks.append(self._block(index, num_units, in_channels, stride))
            in_channels = config.block_depth(index)
        self.block1, self.block2, self.block3 = blocks
        self._init_weights()

    def _block(self, index: int, num_units: int, in_channels: int, stride: int) -> nn.Sequential:
        depth = self.config.block_depth(index)
        units = []
        for i in range(num_units):
            unit_stride = stride if i == num_units - 1 else 1  # slim: stride in the block's last unit
            unit_in = in_channels if i == 0 else depth
            if self.config.bottleneck:
                units.append(BottleneckV2(unit_in, depth, depth // BOTTLENECK_EXPANSION, unit_stride))
            else:
                units.append(BasicV2(unit_in, depth, unit_stride))
        return nn.Sequential(*units)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def out_channels(self) -> int:
        """Channels of every block-3 unit output (1024 for ResNet-101 at width 64)."""
        return self.config.block_depth(2)

    @property
    def num_units(self) -> int:
        """Number of block-3 units: the lasso's candidate layers (23 for ResNet-101)."""
        return len(self.block3)

    @property
    def stride(self) -> int:
        """Output stride of block 3's last unit: 16, or 32 with ``slim_strides``."""
        return 32 if self.config.slim_strides else 16

    @property
    def unit_strides(self) -> list[int]:
        """Output stride of each block-3 unit."""
        return [16] * (self.num_units - 1) + [self.stride]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Root convolution and max pool (no BN/ReLU: the first unit's pre-activation does that)."""
        x = self.conv1(x)
        return F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), 3, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.block2(self.block1(self.stem(x)))
        outputs = []
        for unit in self.block3:
            x = unit(x)
            outputs.append(x)
        return outputs

    def stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw (pre-activation) outputs of blocks 1-3, for per-stage probes."""
        block1 = self.block1(self.stem(x))
        block2 = self.block2(block1)
        return {"block1": block1, "block2": block2, "block3": self.block3(block2)}
