"""Loading trained models back (``mtssl.model.loading``): the trunk export and a run's full network."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mtssl
from mtssl.inputs import image_input
from mtssl.model import MultiTaskNet
from mtssl.model.loading import LoadedTrunk, load_network, load_trunk
from mtssl.train.checkpoint import export_trunk, save_checkpoint
from mtssl.train.config import TrainConfig


def trained_looking(net: MultiTaskNet, seed: int = 1) -> MultiTaskNet:
    """Give every BN non-default statistics and affine parameters, and the lasso rows non-naive weights,
    so that a round trip that dropped any of them would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
        for alpha in net.lasso.alpha.values():
            alpha.copy_(torch.randn(alpha.shape, generator=g))
    return net.eval()


def rgb_batch(n: int = 2, size: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def export(tmp_path: Path, net: MultiTaskNet, step: int = 5) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    return export_trunk(run, net, json.dumps(net.resolved_config()), step=step)


@pytest.mark.parametrize(
    "overrides", [{}, {"input_mode": "native"}, {"lasso": False}], ids=["harmonized", "native", "no-lasso"]
)
def test_load_trunk_round_trips_features_and_lasso_mixes(tmp_path: Path, tiny_net, overrides):
    net = trained_looking(tiny_net(("relpos", "color"), **overrides))
    path = export(tmp_path, net, step=5)
    for loaded in (mtssl.load_trunk(path), load_trunk(path.parent)):  # the file, and the run folder
        assert isinstance(loaded, LoadedTrunk)
        assert loaded.step == 5
        assert loaded.network == net.config
        assert loaded.rows == ["relpos", "color"]
        assert not loaded.trunk.training and not loaded.lasso.training
        torch.testing.assert_close(loaded.lasso.weights(), net.lasso_weights(), rtol=0, atol=0)
        rgb = rgb_batch()
        x = loaded.prepare(rgb)
        assert x.shape[1] == (3 if overrides.get("input_mode") == "native" else 1)
        with torch.no_grad():
            mine, theirs = loaded.trunk(x), net.trunk(x)
            assert len(mine) == len(theirs) == net.trunk.num_units
            for a, b in zip(mine, theirs, strict=True):
                assert torch.allclose(a, b)
            for row in loaded.rows:
                assert torch.allclose(loaded.lasso(mine, row), net.features(x, row))
            if net.config.lasso:  # the rows were given different weights: their mixes differ
                assert not torch.allclose(loaded.lasso(mine, "relpos"), loaded.lasso(mine, "color"))


def test_load_trunk_brings_every_weight_and_statistic_back(tmp_path: Path, tiny_net):
    net = trained_looking(tiny_net(("relpos", "color")))
    loaded = load_trunk(export(tmp_path, net))
    for mine, theirs in ((loaded.trunk, net.trunk), (loaded.lasso, net.lasso)):
        expected = theirs.state_dict()
        got = mine.state_dict()
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(got[key], value), key


def test_a_missing_trunk_names_the_path(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.pt"))):
        load_trunk(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "trunk.pt"))):
        mtssl.load_trunk(tmp_path)  # a run folder without an export


def test_importing_mtssl_does_not_import_torch_but_load_trunk_works(tmp_path: Path, tiny_net):
    path = export(tmp_path, tiny_net(("relpos", "color")), step=9)
    code = (
        "import mtssl, sys\n"
        "assert 'torch' not in sys.modules, 'import mtssl imported torch'\n"
        f"loaded = mtssl.load_trunk({str(path)!r})\n"
        "print(loaded.step, loaded.rows, loaded.trunk.num_units)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["9", "['relpos',", "'color']", "2"]
    with pytest.raises(AttributeError, match="no attribute"):
        mtssl.not_a_thing  # noqa: B018


def test_load_network_round_trips_a_trainer_checkpoint(tmp_path: Path, tiny_net):
    net = trained_looking(tiny_net(("relpos", "color")))
    run = tmp_path / "run"
    config = TrainConfig(shards=str(tmp_path / "shards"), out=str(run), tasks=("relpos", "color"), depth=18, width=8)
    state = {
        "step": 12,
        "model": net.state_dict(),
        "network": json.dumps(net.resolved_config()),
        "config": config.to_json(),
    }
    checkpoint = save_checkpoint(run, state)
    for source in (run, checkpoint):  # the run folder (its newest checkpoint), and the file
        loaded, step = load_network(source)
        assert step == 12
        assert not loaded.training
        assert loaded.config == net.config
        assert loaded.resolved_config() == net.resolved_config()
        expected = net.state_dict()
        assert loaded.state_dict().keys() == expected.keys()
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, expected[key]), key
        assert set(loaded.tasks) == {"relpos", "color"}  # every head came back
        x = image_input(rgb_batch(seed=2), net.config.input_mode)
        with torch.no_grad():
            assert torch.allclose(loaded.features(x, "color"), net.features(x, "color"))


def test_load_network_of_a_folder_without_checkpoints_fails_clearly(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_network(tmp_path)
