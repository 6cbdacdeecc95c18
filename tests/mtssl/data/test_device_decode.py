"""JPEGs handed over as bytes and decoded in the trainer's process (``--jpeg-decode device``): the same
batches as the CPU loader once decoded (checked on CPU with OpenCV standing in for nvJPEG), and on a
GPU, nvJPEG's within a level of libjpeg-turbo's."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtssl.data.device_decode import backend, decode_on_device, jpeg_size, require_backend
from mtssl.data.shardsets import load_set
from mtssl.data.stream import StepStream, TaskSpec, batches_of, fields_for, make_loader, task_pipeline, to_device

KEYS = {"relpos": ("rgb",), "color": ("l", "bins", "ab", "grayscale"), "exemplar": ("rgb",), "motion": ("rgb", "mask")}
CPU = torch.device("cpu")


def opencv_decoder(blobs: list[torch.Tensor], gray: bool, device: torch.device) -> list[torch.Tensor]:
    """What nvJPEG does, done by the CPU loader's decoder: CHW uint8 RGB (or one gray plane)."""
    out = []
    for blob in blobs:
        image = cv2.imdecode(blob.numpy(), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        planes = image[None] if gray else image[..., ::-1].transpose(2, 0, 1)
        out.append(torch.from_numpy(np.ascontiguousarray(planes)).to(device))
    return out


def spec_of(shard_root: Path, task: str, keep_jpeg: bool) -> TaskSpec:
    crop = 64 if task == "motion" else None
    urls = tuple(load_set(shard_root / task).urls)
    return TaskSpec(task, urls, fields_for(KEYS[task]), 3, crop, buffer=8, keep_jpeg=keep_jpeg)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("task", list(KEYS))
def test_bytes_decoded_after_the_copy_give_the_cpu_loaders_batches(shard_root, task):
    raw = list(islice(iter(task_pipeline(spec_of(shard_root, task, True), seed=2)), 3))
    assert any(key.endswith(".jpeg") for key in raw[0])  # the worker did not decode the JPEGs
    decoded = [decode_on_device(batch, CPU, opencv_decoder) for batch in raw]
    reference = list(islice(iter(task_pipeline(spec_of(shard_root, task, False), seed=2)), 3))
    assert all(same(a, b) for a, b in zip(decoded, reference, strict=True))


def test_through_a_loader_worker_and_to_device(shard_root):
    specs = [spec_of(shard_root, task, True) for task in KEYS]
    stream = StepStream(specs, seed=1, rank=0, start_step=0, segment_steps=100)
    got = []
    for bundle in islice(iter(make_loader(stream, workers=1, pin_memory=False)), 7):
        got.append(to_device(bundle, CPU, opencv_decoder))
        stream.release(bundle)
    cpu_specs = [spec_of(shard_root, task, False) for task in KEYS]
    reference = [batches_of(b) for b in islice(iter(StepStream(cpu_specs, 1, 0, 0, 100)), 7)]
    assert all(same(a[t], b[t]) for a, b in zip(got, reference, strict=True) for t in KEYS)


def test_jpeg_size_reads_the_frame_header(shard_root):
    from mtssl.data.stream import tar_members

    for task, field in (("relpos", "rgb.jpg"), ("color", "l.jpg"), ("motion", "rgb.jpg")):
        _, _, data = next(tar_members(load_set(shard_root / task).urls[0], {field}))
        assert jpeg_size(data) == cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]
    for junk in (b"", b"\xff\xd8", b"not a jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF"):
        with pytest.raises(ValueError, match="corrupt JPEG"):
            jpeg_size(junk)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gives")
def test_without_a_gpu_decoder_the_option_says_what_is_missing():
    assert backend()[0] is None
    with pytest.raises(ValueError, match="--jpeg-decode device needs a CUDA device"):
        require_backend()


@pytest.mark.skipif(backend()[0] is None, reason="needs CUDA and torchvision or nvidia-nvimgcodec")
@pytest.mark.parametrize("task", ["relpos", "color", "motion"])
def test_nvjpeg_agrees_with_the_cpu_decoder_within_a_level(shard_root, task):
    cuda = torch.device("cuda")
    for batch in islice(iter(task_pipeline(spec_of(shard_root, task, True), seed=0)), 2):
        gpu = decode_on_device(batch, cuda)
        cpu = decode_on_device(batch, CPU, opencv_decoder)
        for key in ("rgb", "l"):
            if key in cpu:
                diff = (gpu[key].cpu().int() - cpu[key].int()).abs().float()
                assert gpu[key].shape == cpu[key].shape and diff.mean() < 1.0 and diff.max() <= 16
