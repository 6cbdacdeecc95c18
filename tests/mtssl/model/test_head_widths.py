"""Head widths follow the trunk: the paper's widths at 1024 block-3 channels, scaled (with floors) below it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from mtssl.model import MultiTaskNet, NetworkConfig
from mtssl.tasks import ColorHeadConfig, ExemplarHeadConfig, MotionHeadConfig, RelposHeadConfig
from mtssl.tasks.base import PAPER_CHANNELS, follow_trunk, resolve_widths
from mtssl.tasks.color import soft_encoding_table

ALL = ("relpos", "color", "exemplar", "motion")
WIDTH_FIELDS = {
    "relpos": ("patch_channels", "patch_dim", "pair_dims"),
    "color": ("hidden",),
    "exemplar": ("hidden", "dim"),
    "motion": ("hidden",),
}


def widths(net: MultiTaskNet) -> dict[str, dict[str, object]]:
    tasks = net.resolved_config()["tasks"]
    return {task: {name: tasks[task][name] for name in WIDTH_FIELDS[task]} for task in net.config.tasks}


def meta_net(**network) -> MultiTaskNet:
    """A network on the meta device: shapes and configs without allocating the paper's ~100 M parameters.
    The colour task's lookup table is computed (and cached) on the CPU first, so no meta tensor is cached."""
    soft_encoding_table(ColorHeadConfig.k, ColorHeadConfig.sigma)
    with torch.device("meta"):
        return MultiTaskNet(NetworkConfig(**{"tasks": ALL, **network}))


def test_paper_trunk_gets_the_paper_heads():
    net = meta_net(depth=101, width=64)
    assert net.trunk.out_channels == PAPER_CHANNELS == 1024
    assert widths(net) == {
        "relpos": {"patch_channels": 256, "patch_dim": 4096, "pair_dims": (4096, 4096)},
        "color": {"hidden": 256},
        "exemplar": {"hidden": 4096, "dim": 1024},
        "motion": {"hidden": 256},
    }
    relpos, exemplar = net.tasks["relpos"].head, net.tasks["exemplar"].head
    assert relpos.patch[0].out_channels == 256 and relpos.patch[4].out_features == 4096
    assert [m.out_features for m in relpos.classifier if isinstance(m, torch.nn.Linear)] == [4096, 4096, 8]
    assert exemplar.net[2].out_features == 4096 and exemplar.net[4].out_features == 1024
    assert net.tasks["color"].head.reduce.out_channels == 256 and net.tasks["motion"].head.net[0].out_channels == 256


def test_small_trunk_scales_the_heads_down_to_their_floors():
    net = meta_net(depth=18, width=16)
    assert net.trunk.out_channels == 64  # 1/16 of the paper's channels
    assert widths(net) == {
        "relpos": {"patch_channels": 32, "patch_dim": 256, "pair_dims": (256, 256)},  # 256/16 = 16 -> floor 32
        "color": {"hidden": 32},  # 16 -> floor 32
        "exemplar": {"hidden": 256, "dim": 64},
        "motion": {"hidden": 32},
    }
    assert net.tasks["relpos"].head.patch[0].out_channels == 32  # the head is built with the resolved widths


def test_follow_trunk_rounds_and_floors():
    assert follow_trunk(4096, 1024, 64) == 4096
    assert follow_trunk(4096, 2048, 64) == 8192  # wider trunks get wider heads
    assert follow_trunk(256, 96, 1) == 24
    assert follow_trunk(1024, 40, 1) == 40
    assert follow_trunk(256, 64, 32) == 32
    assert follow_trunk(4096, 4, 64) == 64


def test_explicit_widths_are_kept():
    given = RelposHeadConfig(patch_dim=48)
    resolved = resolve_widths(given, 64)
    assert resolved.patch_dim == 48 and resolved.patch_channels == 32 and resolved.pair_dims == (256, 256)
    assert given.patch_channels is None  # the caller's config is not changed
    explicit = MultiTaskNet(
        NetworkConfig(tasks=("exemplar", "motion"), depth=18, width=16),
        {"exemplar": ExemplarHeadConfig(dim=7), "motion": MotionHeadConfig(hidden=5)},
    )
    assert widths(explicit) == {"exemplar": {"hidden": 256, "dim": 7}, "motion": {"hidden": 5}}
    assert explicit.tasks["motion"].head.net[0].out_channels == 5
    assert resolve_widths(ColorHeadConfig(hidden=3), 1024) == ColorHeadConfig(hidden=3)


def test_resolved_config_round_trips(tmp_path: Path):
    net = MultiTaskNet(NetworkConfig(tasks=ALL, depth=18, width=4), {"relpos": RelposHeadConfig(patch_dim=40)})
    resolved = json.loads(json.dumps(net.resolved_config()))  # as a checkpoint holds it
    assert all(resolved["tasks"][task][name] is not None for task in ALL for name in WIDTH_FIELDS[task])
    assert resolved["tasks"]["relpos"]["patch_dim"] == 40 and resolved["tasks"]["relpos"]["pair_dims"] == [64, 64]
    rebuilt = MultiTaskNet.from_resolved(resolved)
    assert rebuilt.resolved_config() == net.resolved_config()
    rebuilt.load_state_dict(net.state_dict())  # same shapes everywhere: strict load


def test_demo_size_network_is_small():
    """The network ``mtssl-demo`` trains (``--preset cpu``) stays CPU-sized: < 5 M parameters, < 50 MB."""
    from mtssl.demo import demo_config
    from mtssl.tasks import TASKS

    cfg = demo_config(Path("shards"), Path("run"), steps=10, workers=0)
    network = NetworkConfig(tasks=ALL, depth=cfg.depth, width=cfg.width, input_mode=cfg.input_mode)
    task_configs = {t: TASKS[t].config_class(**cfg.task_options.get(t, {})) for t in ALL}
    net = MultiTaskNet(network, task_configs)
    assert (cfg.depth, net.trunk.out_channels) == (18, 128)
    assert widths(net)["relpos"] == {"patch_channels": 32, "patch_dim": 512, "pair_dims": (512, 512)}
    parameters = sum(p.numel() for p in net.parameters())
    assert parameters < 5_000_000, parameters
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    assert buffer.tell() < 50 * 2**20, buffer.tell()


@pytest.mark.parametrize(
    "task_config", [RelposHeadConfig(), ColorHeadConfig(), ExemplarHeadConfig(), MotionHeadConfig()]
)
def test_every_width_field_defaults_to_following_the_trunk(task_config):
    for name in type(task_config).WIDTHS:
        assert getattr(task_config, name) is None, name
