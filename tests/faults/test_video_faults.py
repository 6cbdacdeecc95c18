"""Damaged video frames are never samples (issue 24): a frame the decoder marks corrupt or cannot decode, the
frames predicted from it, and the frames that would be masked against one of them are filtered with a reason
and counted; a frame folder whose frames change size is rejected with a reason, never as an internal error."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from mtssl.contract import MANIFEST_FILE
from pipelines.build import build
from pipelines.recipes.motion import MotionRecipeConfig
from pipelines.videos import VideoSource, iter_frames
from tests.pipelines.videokit import moving_square_frames

COUNT, KEYFRAMES = 40, 10  # frames of the test video; a keyframe every 10 frames
CORRUPT, REFUSED = 15, 25  # the packet half-zeroed (decoded, marked corrupt) and the one zeroed (refused)
CFG = MotionRecipeConfig(size=96, stride=1, max_frames=None, segment_frames=8, min_source_side=32)
REACH = CFG.reach


def write_mpeg4(path: Path, frames: list[np.ndarray]) -> Path:
    """FFmpeg's own MPEG-4 encoder (in every build), no B-frames, a keyframe every ``KEYFRAMES`` frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25, options={"g": str(KEYFRAMES)})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def packet_spans(path: Path) -> dict[int, tuple[int, int]]:
    """Frame index -> (byte offset, size) of its packet in the file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate, base = stream.average_rate, stream.time_base
        return {round(p.pts * base * rate): (p.pos, p.size) for p in container.demux(stream) if p.size}


def damage(path: Path) -> bytes:
    """The file with the second half of frame CORRUPT's packet zeroed (the decoder conceals it and marks the
    frame corrupt) and all of frame REFUSED's packet zeroed (the decoder refuses it, then goes on). Found by
    demuxing, so the damage hits the same frames whatever bytes this FFmpeg's encoder wrote."""
    data = bytearray(path.read_bytes())
    spans = packet_spans(path)
    for index, keep in ((CORRUPT, 0.5), (REFUSED, 0.0)):
        pos, size = spans[index]
        data[pos + int(size * keep) : pos + size] = bytes(size - int(size * keep))
    return bytes(data)


def decode_all(path: Path) -> dict[int, np.ndarray]:
    """Every frame the decoder gives, by index, skipping refused packets: what a tolerant player shows."""
    frames = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate, base = stream.average_rate, stream.time_base
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.InvalidDataError:
                continue
            frames.update({round(f.pts * base * rate): f.to_ndarray(format="rgb24") for f in decoded})
    return frames


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return write_mpeg4(tmp_path_factory.mktemp("clean") / "clean.mp4", moving_square_frames(COUNT))


@pytest.fixture(scope="module")
def videos(tmp_path_factory, clean) -> Path:
    """damaged.mp4, a frame folder with one unreadable frame file, and one with a frame of another size."""
    root = tmp_path_factory.mktemp("video-faults")
    frames = moving_square_frames(COUNT)
    (root / "damaged.mp4").write_bytes(damage(clean))
    for name in ("unreadable", "resized"):
        (root / name).mkdir()
        for i, rgb in enumerate(frames[:12]):
            cv2.imwrite(str(root / name / f"{i:05d}.png"), rgb[..., ::-1])
    (root / "unreadable" / "00006.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a damaged frame file
    cv2.imwrite(str(root / "resized" / "00007.png"), cv2.resize(frames[7], (120, 96))[..., ::-1])
    return root


@pytest.fixture(scope="module")
def truly_damaged(clean, videos) -> set[int]:
    """Frames of damaged.mp4 that differ from the clean decode or are missing: found by pixels, not by flags."""
    intact, damaged = decode_all(clean), decode_all(videos / "damaged.mp4")
    return {i for i in intact if i not in damaged or not np.array_equal(intact[i], damaged[i])}


def build_set(videos: Path, out: Path, cfg: MotionRecipeConfig = CFG) -> tuple[dict, list[dict], list[dict]]:
    build("motion", videos, out, cfg, workers=0, samples_per_shard=16, show_progress=False)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    return manifest, *(pq.read_table(out / f"{name}.parquet").to_pylist() for name in ("index", "rejects"))


@pytest.fixture(scope="module")
def built(videos, tmp_path_factory) -> tuple[dict, list[dict], list[dict]]:
    return build_set(videos, tmp_path_factory.mktemp("video-faults-out") / "motion")


def rows_of(rows: list[dict], source: str, reason: str | None = None) -> dict[int, dict]:
    return {r["frame"]: r for r in rows if r["source"] == source and reason in (None, r["reason"])}


def near(frames: set[int], count: int) -> set[int]:
    """The frames within the recipe's reach of one of ``frames``, not among them."""
    return {i for i in range(count) if any(abs(i - j) <= REACH for j in frames)} - frames


def test_the_damage_hits_the_frames_it_aims_at(videos, truly_damaged):
    """The fixture's premise: the two packets and the frames predicted from them (to the next keyframe)."""
    assert truly_damaged == set(range(CORRUPT, 20)) | set(range(REFUSED, 30))


def test_decoding_marks_damaged_frames_and_goes_on_after_a_refused_packet(videos, truly_damaged):
    decoded = list(iter_frames(videos, VideoSource("damaged.mp4", "file"), 0, 99, size=96))
    assert [f.index for f in decoded] == list(range(COUNT))  # a refused frame keeps its place
    assert {f.index for f in decoded if f.damage} == truly_damaged
    assert "corrupt" in decoded[CORRUPT].damage and "refused" in decoded[REFUSED].damage
    assert str(CORRUPT) in decoded[CORRUPT + 1].damage  # predicted from a damaged frame: says which
    assert all(f.rgb.shape == decoded[0].rgb.shape for f in decoded)


def test_no_sample_comes_from_or_is_masked_against_a_damaged_frame(built, truly_damaged):
    _, index, rejects = built
    samples = {r["frame"]: json.loads(r["params"]) for r in index if r["source"] == "damaged.mp4"}
    assert len(samples) >= 10
    assert not set(samples) & truly_damaged
    assert not {p for params in samples.values() for p in params["partners"]} & truly_damaged
    assert not rows_of(rejects, "damaged.mp4", None).keys() & set(samples)
    assert not [r for r in rejects if r["source"] == "damaged.mp4" and r["kind"] == "rejected"]


def test_damaged_frames_and_their_neighbours_are_filtered_with_a_reason(built, truly_damaged):
    _, _, rejects = built
    damaged = rows_of(rejects, "damaged.mp4", "damaged frame")
    assert set(damaged) == truly_damaged and {r["kind"] for r in damaged.values()} == {"filtered"}
    assert "corrupt" in damaged[CORRUPT]["detail"] and "refused" in damaged[REFUSED]["detail"]
    neighbours = rows_of(rejects, "damaged.mp4", "damaged neighbour")
    assert set(neighbours) == near(truly_damaged, COUNT)
    assert str(CORRUPT) in neighbours[CORRUPT - 1]["detail"]


def test_every_considered_frame_is_a_sample_or_a_filtered_row_and_the_manifest_counts_them(built, truly_damaged):
    manifest, index, rejects = built
    for source, count in (("damaged.mp4", COUNT), ("unreadable", 12)):
        frames = [r["frame"] for r in index if r["source"] == source]
        frames += [r["frame"] for r in rejects if r["source"] == source and r["kind"] == "filtered"]
        assert sorted(frames) == list(range(count)), source
    damaged_rows = [r for r in rejects if r["reason"] == "damaged frame"]
    neighbour_rows = [r for r in rejects if r["reason"] == "damaged neighbour"]
    assert manifest["filtered"]["damaged frame"] == len(damaged_rows) == len(truly_damaged) + 1  # + the file
    assert manifest["filtered"]["damaged neighbour"] == len(neighbour_rows)
    assert manifest["totals"]["filtered"] == len([r for r in rejects if r["kind"] == "filtered"])


def test_an_unreadable_frame_file_in_a_frame_folder_is_a_damaged_frame(built):
    _, index, rejects = built
    assert not [r for r in rejects if r["source"] == "unreadable" and r["kind"] == "rejected"]
    damaged = rows_of(rejects, "unreadable", "damaged frame")
    assert set(damaged) == {6} and "00006.png" in damaged[6]["detail"]
    assert set(rows_of(rejects, "unreadable", "damaged neighbour")) == near({6}, 12)
    assert len([r for r in index if r["source"] == "unreadable"]) >= 3


def test_a_frame_folder_whose_frames_change_size_is_rejected_with_a_reason(built):
    _, index, rejects = built
    rows = [r for r in rejects if r["source"] == "resized"]
    assert [(r["kind"], r["reason"]) for r in rows] == [("rejected", "frame size changes")]
    detail = rows[0]["detail"]
    assert "00007.png" in detail and "120x96" in detail and "00000.png" in detail and "128x96" in detail
    assert "Traceback" not in detail and "internal error" not in {r["reason"] for r in rejects}
    assert not [r for r in index if r["source"] == "resized"]


def test_segmenting_does_not_change_which_frames_are_filtered(videos, built, tmp_path):
    one_segment = MotionRecipeConfig(**{**vars(CFG), "segment_frames": 1000})
    _, index, rejects = build_set(videos, tmp_path / "one", one_segment)

    def outcome(index: list[dict], rejects: list[dict]) -> set[tuple]:
        return {(r["source"], r["frame"]) for r in index} | {(r["source"], r["frame"], r["reason"]) for r in rejects}

    assert outcome(index, rejects) == outcome(built[1], built[2])
