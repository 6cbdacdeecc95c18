import numpy as np
import pytest
import torch

from mtssl import contract
from mtssl.inputs import (
    IMAGENET_MEAN,
    batch_from_samples,
    color_drop,
    input_channels,
    l_input,
    match_channels,
    random_downsample,
    rgb_input,
    rms_normalize,
    split_grid,
)


def test_rgb_and_l_normalisation():
    rgb = torch.tensor([124, 117, 104], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = rgb_input(rgb)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([124.0, 117, 104]) - torch.tensor(IMAGENET_MEAN))
    assert l_input(torch.tensor([[[[0, 255]]]], dtype=torch.uint8)).flatten().tolist() == [-127.5, 127.5]


def test_modes_choose_trunk_channels():
    assert input_channels("harmonized") == 1 and input_channels("native") == 3
    with pytest.raises(ValueError):
        input_channels("grey")


def test_match_channels_repeats_l_and_never_drops_colour():
    grey = torch.randn(2, 1, 4, 4)
    assert torch.equal(match_channels(grey, 3), grey.repeat(1, 3, 1, 1))
    with pytest.raises(ValueError):
        match_channels(torch.randn(2, 3, 4, 4), 1)


def test_rms_normalize_sets_each_sample_rms():
    x = torch.randn(3, 2, 5, 5) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1)
    rms = rms_normalize(x, scale=50).square().mean(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(rms, torch.full((3,), 50.0))


def test_color_drop_keeps_one_centred_channel_and_noise_elsewhere():
    rgb = torch.rand(16, 3, 8, 8) * 255
    out = color_drop(rgb, noise=1.0, generator=torch.Generator().manual_seed(1))
    spread = out.abs().amax(dim=(2, 3))
    kept = spread.argmax(dim=1)
    assert len(set(kept.tolist())) > 1  # the kept channel is random per sample
    for i, channel in enumerate(kept.tolist()):
        original = rgb[i, channel]
        assert torch.allclose(out[i, channel], original - original.mean(), atol=1e-4)
        dropped = [c for c in range(3) if c != channel]
        assert out[i, dropped].abs().max() <= 0.5


def test_random_downsample_blurs_chosen_patches_only():
    x = torch.rand(6, 1, 16, 16) * 255
    assert random_downsample(x, prob=0.0, min_side=10) is x
    out = random_downsample(x, prob=1.0, min_side=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 1  # every patch lost detail
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float().expand(4, 1, 16, 16) * 255
    blurred = random_downsample(checker, prob=1.0, min_side=10, generator=torch.Generator().manual_seed(0))
    assert (blurred.std(dim=(1, 2, 3)) < 0.5 * checker.std(dim=(1, 2, 3))).all()  # fine detail is gone
    flat = torch.full((1, 1, 16, 16), 7.0)
    assert torch.allclose(random_downsample(flat, prob=1.0, min_side=10), flat)


def test_split_grid_matches_the_contract_tiling():
    tiles = np.random.default_rng(0).integers(0, 255, (3 * 5, 3 * 4, 3), dtype=np.uint8)
    expected = contract.untile(tiles, 3, 3)  # (9, 5, 4, 3)
    batch = torch.from_numpy(tiles).permute(2, 0, 1)[None]
    got = split_grid(batch, 3, 3)[0].permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, expected)


def test_batch_from_samples_reads_the_stored_encodings():
    rng = np.random.default_rng(0)
    raw = []
    for i in range(2):
        fields = {
            "l.jpg": contract.encode_jpeg(rng.integers(0, 255, (16, 16), dtype=np.uint8)),
            "bins.png": contract.encode_png(rng.integers(0, 313, (4, 4)).astype(np.uint16)),
            "ab.npy": contract.encode_npy(rng.integers(-100, 100, (4, 4, 2)).astype(np.int8)),
            "json": contract.encode_json({"grayscale": i == 1}),
        }
        raw.append({"__key__": f"k{i}", **fields})
    decoded = [contract.decode_sample(s, ("l.jpg", "bins.png", "ab.npy", "json")) for s in raw]
    batch = batch_from_samples(decoded)
    assert batch["l"].shape == (2, 1, 16, 16) and batch["l"].dtype == torch.uint8
    assert batch["bins"].shape == (2, 4, 4) and batch["bins"].dtype == torch.int64
    assert batch["ab"].shape == (2, 2, 4, 4) and batch["ab"].dtype == torch.int8
    assert torch.equal(batch["ab"][1, 0], torch.from_numpy(decoded[1]["ab.npy"][..., 0]))
    assert torch.equal(batch["bins"][0], torch.from_numpy(decoded[0]["bins.png"].astype(np.int64)))
    assert batch["grayscale"].tolist() == [False, True]
