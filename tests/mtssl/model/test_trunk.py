import pytest
import torch

from mtssl.model.trunk import UNITS, ResNetV2Trunk, TrunkConfig, pad_same


@pytest.mark.parametrize("depth", [18, 50, 101])
@pytest.mark.parametrize("channels", [1, 3])
def test_block3_units_are_exposed_at_stride_16(depth, channels):
    trunk = ResNetV2Trunk(TrunkConfig(depth=depth, width=4, in_channels=channels))
    units = trunk(torch.randn(2, channels, 48, 64))
    expected_channels = 4 * 4 * (4 if depth >= 50 else 1)
    assert len(units) == UNITS[depth][2] == trunk.num_units
    assert trunk.out_channels == expected_channels
    assert all(u.shape == (2, expected_channels, 3, 4) for u in units)
    assert trunk.unit_strides == [16] * trunk.num_units


def test_slim_strides_put_each_stride_in_the_last_unit():
    trunk = ResNetV2Trunk(TrunkConfig(depth=50, width=4, slim_strides=True))
    strides = [[unit.stride for unit in block] for block in (trunk.block1, trunk.block2, trunk.block3)]
    assert strides == [[1, 1, 2], [1, 1, 1, 2], [1, 1, 1, 1, 1, 2]]
    units = trunk(torch.randn(1, 1, 64, 64))
    assert [u.shape[-1] for u in units] == [4] * 5 + [2]
    assert trunk.unit_strides == [16] * 5 + [32]


def test_default_layout_has_no_stride_in_block3():
    trunk = ResNetV2Trunk(TrunkConfig(depth=50, width=4))
    assert [unit.stride for unit in trunk.block3] == [1] * 6
    assert [unit.stride for unit in trunk.block2] == [1, 1, 1, 2]


def test_stages_return_blocks_1_to_3():
    trunk = ResNetV2Trunk(TrunkConfig(depth=18, width=4, in_channels=3))
    x = torch.randn(1, 3, 64, 64)
    stages = trunk.stages(x)
    assert {k: tuple(v.shape) for k, v in stages.items()} == {
        "block1": (1, 4, 8, 8),
        "block2": (1, 8, 4, 4),
        "block3": (1, 16, 4, 4),
    }
    assert torch.allclose(stages["block3"], trunk(x)[-1])


@pytest.mark.parametrize("size", [7, 8, 9, 112, 113])
def test_max_pool_padding_is_tensorflow_same(size):
    padded = pad_same(torch.zeros(1, 1, size, size), kernel=3, stride=2)
    out = torch.nn.functional.max_pool2d(padded, 3, stride=2)
    assert out.shape[-1] == -(-size // 2)  # SAME: ceil(size / stride)
    # TF puts the odd padding pixel at the end: even sizes pad (0, 1).
    if size % 2 == 0:
        assert torch.equal(padded[0, 0, :size, :size], torch.zeros(size, size))


# ---- slim's resnet_v2_101, counted independently of the module structure ----------------------


def slim_bottleneck_params(depth_in: int, depth: int, bottleneck: int) -> int:
    """Trainable parameters of slim's resnet_v2 ``bottleneck`` unit (BN with scale and offset)."""
    params = 2 * depth_in  # preact BN
    if depth_in != depth:
        params += depth_in * depth + depth  # 1x1 shortcut, with bias
    params += depth_in * bottleneck + 2 * bottleneck  # conv1 + BN
    params += 9 * bottleneck * bottleneck + 2 * bottleneck  # conv2 + BN
    return params + bottleneck * depth + depth  # conv3, with bias


def slim_params(blocks: list[tuple[int, int]], in_channels: int = 3) -> tuple[int, int]:
    """(parameters, output depth) of slim resnet_v2's root and ``(base_depth, units)`` blocks."""
    params, depth_in = 7 * 7 * in_channels * 64 + 64, 64
    for base, units in blocks:
        for _ in range(units):
            params += slim_bottleneck_params(depth_in, 4 * base, base)
            depth_in = 4 * base
    return params, depth_in


SLIM_101 = [(64, 3), (128, 4), (256, 23), (512, 3)]  # slim resnet_v2_101 blocks (base depth, units)


def test_unit_counts_and_parameters_match_slim_resnet_v2_101_through_block3():
    """Against an independent count of slim's layout, itself anchored to the published size below."""
    params, depth = slim_params(SLIM_101)
    params += 2 * depth + depth * 1000 + 1000  # postnorm BN and 1000-way logits
    assert params == 44_577_896  # trainable parameters of Keras' ResNet101V2 (same layout as slim's)
    with torch.device("meta"):
        trunk = ResNetV2Trunk(TrunkConfig(depth=101, width=64, in_channels=3, slim_strides=True))
    blocks = (trunk.block1, trunk.block2, trunk.block3)
    assert [len(block) for block in blocks] == [units for _, units in SLIM_101[:3]] == [3, 4, 23]
    assert [block[-1].conv3.out_channels for block in blocks] == [256, 512, 1024]
    assert [block[0].conv2.out_channels for block in blocks] == [64, 128, 256]
    assert [[unit.stride for unit in block] for block in blocks] == [
        [1, 1, 2],
        [1, 1, 1, 2],
        [1] * 22 + [2],
    ]
    expected, depth = slim_params(SLIM_101[:3])
    assert depth == trunk.out_channels == 1024
    assert sum(p.numel() for p in trunk.parameters()) == expected


def test_l_input_changes_only_the_root_convolution():
    grey = ResNetV2Trunk(TrunkConfig(depth=50, width=8, in_channels=1))
    rgb = ResNetV2Trunk(TrunkConfig(depth=50, width=8, in_channels=3))
    assert grey.conv1.weight.shape == (8, 1, 7, 7)
    n_grey = sum(p.numel() for p in grey.parameters())
    n_rgb = sum(p.numel() for p in rgb.parameters())
    assert n_rgb - n_grey == 2 * 7 * 7 * 8


def test_rejects_unknown_depth():
    with pytest.raises(ValueError, match="depth"):
        TrunkConfig(depth=34)
