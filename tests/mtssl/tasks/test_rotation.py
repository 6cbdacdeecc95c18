"""Rotation prediction on the device: all four rotations of every image, labelled by the quarter turns."""

from __future__ import annotations

import torch

from mtssl.tasks.rotation import RotationHeadConfig, RotationTask, rotate_all, rotation_accuracy


def test_every_image_comes_in_its_four_rotations_with_their_labels():
    x = torch.zeros(2, 1, 8, 8)
    x[:, :, 0, 0] = torch.tensor([1.0, 2.0]).view(2, 1)  # a mark in the top-left corner
    rotated, labels = rotate_all(x)
    assert rotated.shape == (8, 1, 8, 8) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    corners = [(0, 0), (7, 0), (7, 7), (0, 7)]  # where a counter-clockwise quarter turn takes the corner
    for i, k in enumerate(labels.tolist()):
        y, x_ = corners[k]
        assert rotated[i, 0, y, x_] == 1.0 + i % 2
        assert rotated[i].sum() == 1.0 + i % 2


def test_prepare_crops_and_flips_but_keeps_the_labels():
    task = RotationTask(16, 16, RotationHeadConfig(hidden=8, crop=24))
    batch = {"rgb": torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)}
    inputs, targets = task.prepare(batch, "harmonized", 1, torch.Generator().manual_seed(0))
    assert inputs.shape == (12, 1, 24, 24) and targets["labels"].tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    task.eval()
    central, _ = task.prepare(batch, "native", 3)
    assert central.shape == (12, 3, 24, 24)


def test_the_head_learns_the_rotation_of_an_asymmetric_pattern():
    """Features with a bright top row: the 2x2-pooled head must tell the four turns apart."""
    torch.manual_seed(0)
    task = RotationTask(4, 16, RotationHeadConfig(hidden=8))
    base = torch.rand(16, 4, 6, 6) * 0.1
    base[:, :, 0, :] += 1.0
    features, labels = rotate_all(base)
    optimizer = torch.optim.Adam(task.parameters(), lr=0.05)
    for _ in range(60):
        loss, _ = task.loss_and_metric(task(features), {"labels": labels})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert rotation_accuracy(task(features), labels).item() == 1.0 and loss.item() < 0.1
