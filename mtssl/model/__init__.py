"""The model half of mtssl: ResNet-v2 trunk through block 3, lasso combination, multi-task network."""

from mtssl.model.lasso import LassoCombiner, l1_penalty, naive_row
from mtssl.model.network import PENALTY, MultiTaskNet, NetworkConfig, autocast
from mtssl.model.trunk import UNITS, ResNetV2Trunk, TrunkConfig

__all__ = [
    "PENALTY",
    "UNITS",
    "LassoCombiner",
    "MultiTaskNet",
    "NetworkConfig",
    "ResNetV2Trunk",
    "TrunkConfig",
    "autocast",
    "l1_penalty",
    "naive_row",
]
