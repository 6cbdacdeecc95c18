"""The motion mask's settings: every knob of the method and of Pathak's frame filter, and the named qualities.

The method itself is described in :mod:`pipelines.motion.masks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class MaskConfig:
    """Every knob of the mask and of Pathak's frame filter (pixel values assume a 256-px shorter side)."""

    preset: str = "medium"  # DIS optical-flow preset: ultrafast, fast or medium. fast: J (mean IoU) 0.49
    #   instead of 0.57 on ten DAVIS-2016 train sequences, at 2.2 times the speed
    refine_iters: int | None = 2  # DIS variational refinement iterations. The flow preset's own 5 give the
    #   same J (mean IoU) on ten DAVIS-2016 train sequences, 25% slower; 0 gives J 0.55 instead of 0.57
    finest_scale: int | None = None  # finest level of the flow's image pyramid: 0 computes the flow at the
    #   full working resolution, 1 at half of it (default: the flow preset's own, 1 for medium). 0 on the 30 DAVIS-2016
    #   train sequences: J (mean IoU) 0.614 -> 0.641 (edges in the right place), each flow 3.8 times as slow
    gaps: tuple[int, ...] = (1, 2)  # partner frames of each masked frame, as frame offsets (at 25-30 frames
    #   a second). 1,2: J (mean IoU) 0.57 on ten DAVIS-2016 train sequences; 1 alone: 0.52; 1,3: 0.54
    bidirectional: bool = True  # partners before the frame too, not only after it. After it only: J (mean
    #   IoU) 0.45 instead of 0.57 on ten DAVIS-2016 train sequences (one partner 3 frames after it: 0.26)
    combine: str = "min"  # how the masks of a frame's pairs combine: min (a pixel moves in every pair; J
    #   (mean IoU) 0.57 on ten DAVIS-2016 train sequences) or directional (it moves in some pair before the
    #   frame and in some pair after it: keeps an object that pauses for one gap; J 0.44)
    grid_step: int = 8  # spacing in px of the flow samples the camera motion is fitted to (6: the same IoU,
    #   slower)
    ransac_threshold: float = 1.0  # error in px up to which a flow sample fits the camera motion (RANSAC)
    max_model_points: int = 300  # most flow samples one camera fit uses (more: slower, the same IoU)
    min_model_points: int = 12  # fewest textured flow samples a camera fit needs; with fewer, no camera motion
    #   is fitted
    min_texture: float = 28.0  # texture (mean Sobel gradient magnitude over 7 x 7 px) from which a pixel's
    #   flow counts as evidence of motion; a hand-tuned value
    ring_width: float = 0.15  # width of the frame's border ring that votes for the camera motion, as a share
    #   of each side (0.15: 15%); hand-tuned
    noise_k: float = 4.0  # the motion threshold is the larger of --mask-min-speed times the gap and this many times
    #   the background's leftover flow after the camera motion; hand-tuned
    min_speed: float = 0.6  # lowest motion threshold, in px of flow left after the camera motion per frame
    #   of gap. 0.6: J (mean IoU) 0.57 on ten DAVIS-2016 train sequences and 0.83 on the synthetic videos of seeds
    #   100 and 101; 0.4: 0.55 and 0.88; 0.8: 0.58 and 0.76 (slow objects need it low)
    open_px: int = 5  # size in px of the opening that removes specks from the moving seeds; hand-tuned
    half_max: float = 0.3  # cut each moving region where its leftover flow falls below this share of the
    #   region's level (0.3: 30%); hand-tuned
    half_max_pct: float = 75.0  # percentile of a region's leftover flow (over its textured pixels) taken as
    #   the region's level
    flat_vote: float = 0.5  # a flat (textureless) region joins the mask when more than this share of its rim
    #   is foreground (0.5: half); hand-tuned
    border_vote: float = 1.0  # weight of a flat region's pixels on the frame border, which vote background
    close_px: int = 11  # size in px of the closing that fills gaps between the moving seeds; hand-tuned
    min_region: float = 0.01  # drop moving regions smaller than this share of the frame (0.01: 1%)
    fill_holes: bool = True  # fill holes the mask encloses
    seg_scale: int = 2  # segment at 1/N of the working resolution (2: 4 times cheaper; the medium flow
    #   preset works at half resolution anyway)
    guide_radius: int = 8  # radius in px of the guided filter that snaps the mask's edges to the image's;
    #   0 turns it off; hand-tuned
    guide_eps: float = 0.01  # smoothing of the guided filter (gray levels from 0 to 1); hand-tuned
    fb_check: bool = False  # drop pixels whose forward and backward flows disagree: J (mean IoU) 0.34
    #   instead of 0.57 on ten DAVIS-2016 train sequences, and twice the flows to compute
    fb_threshold: float = 1.0  # disagreement in px of the forward and backward flows above which a pixel is
    #   dropped (with --mask-fb-check)
    grabcut: bool = True  # refine the mask with GrabCut on the frame's colours: J (mean IoU) 0.53 -> 0.57
    #   on ten DAVIS-2016 train sequences
    grabcut_scale: int = 2  # run GrabCut at 1/N of the working resolution. On the 30 DAVIS-2016 train
    #   sequences: 3 gives J (mean IoU) 0.605, 2 gives 0.614 (3% slower), 1 gives 0.622
    grabcut_iters: int = 1  # GrabCut iterations; 2 and 4: the same J (mean IoU) on ten DAVIS-2016 train
    #   sequences, slower
    grabcut_core_px: int = 15  # GrabCut must keep the mask shrunk by this many px as foreground; without
    #   that core, J (mean IoU) falls from 0.57 to 0.33 on ten DAVIS-2016 train sequences
    grabcut_band_px: int = 15  # width in px of the band around the mask that GrabCut may add; 30: J (mean
    #   IoU) 0.01 lower on ten DAVIS-2016 train sequences
    grabcut_agree: float = 0.7  # keep the motion mask where GrabCut's overlaps it less than this (IoU):
    #   colours that do not tell object from background (random textures) otherwise cost 0.3 IoU
    clip_radius: int = 0  # frames on each side of a frame whose own masks vote on its mask, carried into it
    #   along the flow (0: no vote). 4 on the 30 DAVIS-2016 train sequences: J (mean IoU) 0.614 -> 0.636,
    #   with full-resolution flow and GrabCut 0.651 -> 0.661; the build masks every frame near a considered
    #   frame, 5 times the work at stride 5
    clip_vote: float = 0.5  # with --mask-clip-radius, a pixel is foreground when more than this share of the
    #   frames that see it call it foreground. 0.4 instead of 0.5 on the 30 DAVIS-2016 train sequences: J
    #   (mean IoU) 0.659 -> 0.661, precision on kept frames 0.78 -> 0.76
    min_fg: float = 0.03  # drop frames whose mask covers less than this share of the frame (0.03: 3%).
    #   Pathak et al.'s 0.10 keeps 24% of the frames of ten DAVIS-2016 train sequences, whose objects cover
    #   2-12% of the frame; 0.03 keeps 77%
    max_fg: float = 0.80  # drop frames whose mask covers more than this share of the frame (Pathak et al.)
    border_width: float = 0.05  # width of the frame's border band, as a share of each side (Pathak et al.)
    max_border_fg: float = 0.10  # drop frames whose border band is more than this share foreground (Pathak
    #   et al.)

    def __post_init__(self) -> None:
        if not self.gaps or min(self.gaps) < 1:
            raise ValueError(f"gaps must be positive frame offsets, got {self.gaps!r}")
        if self.clip_radius < 0 or not 0 <= self.clip_vote < 1:
            raise ValueError(f"need clip_radius >= 0 and 0 <= clip_vote < 1: {self.clip_radius}, {self.clip_vote}")
        if self.combine not in COMBINE:
            raise ValueError(f"unknown combine {self.combine!r}; choose from {', '.join(COMBINE)}")

    @property
    def max_gap(self) -> int:
        return max(self.gaps)

    @property
    def reach(self) -> int:
        """Frames on each side of a frame that its mask needs: its partners, and theirs for the clip's vote."""
        return self.max_gap + max(0, self.clip_radius)

    def offsets(self) -> list[int]:
        """Partner offsets in order of preference: +1, -1, +2, -2, ... (forward only unless bidirectional)."""
        signs = (1, -1) if self.bidirectional else (1,)
        return [sign * gap for gap in sorted(set(self.gaps)) for sign in signs]


COMBINE = ("min", "directional")


QUALITY = {
    "default": MaskConfig(),
    # the method as it was before it met real video: one forward pair 3 frames on, no appearance step
    "fast": MaskConfig(gaps=(3,), bidirectional=False, grabcut=False, min_speed=0.4),
    # flow and GrabCut at the full working resolution: edges in the right place (benchmarks/motion_cv.py)
    "fine": MaskConfig(finest_scale=0, grabcut_scale=1),
    # "fine", and the masks of the 4 frames on each side of a frame vote on its mask (pipelines.motion.clip)
    "clip": MaskConfig(finest_scale=0, grabcut_scale=1, clip_radius=4, clip_vote=0.4),
}

QUALITY_HELP = (  # what the --quality levels do, for the help of build motion and score-motion alike
    f"{' or '.join(QUALITY)} (fast: one partner 3 frames after each frame and no GrabCut, 3.5 times faster, J "
    "(mean IoU) 0.25 instead of 0.57 on ten DAVIS-2016 train sequences; fine: flow and GrabCut at full "
    "resolution, J 0.651 instead of 0.614 on thirty, 3 times slower; clip: fine, and the masks of the 4 frames "
    "on each side of a frame vote on its mask, J 0.661, 15 times slower)"
)


def quality_config(name: str) -> MaskConfig:
    if name not in QUALITY:
        raise ValueError(f"unknown quality {name!r}; choose from {', '.join(QUALITY)}")
    return QUALITY[name]
