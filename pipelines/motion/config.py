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

    preset: str = "medium"  # ours, DAVIS: DIS preset; "fast": J 0.49 instead of 0.57, 2.2x the speed
    refine_iters: int | None = 2  # ours, DAVIS: DIS variational refinement iterations (None: the preset's 5:
    #   the same J, 25% slower; 0: J 0.55)
    gaps: tuple[int, ...] = (1, 2)  # ours, DAVIS: partner offsets (frames at 25-30 fps); 1: J 0.52, 1,3: J 0.54
    bidirectional: bool = True  # ours, DAVIS: partners before t too; forward only 0.45 (forward (3,): 0.26)
    combine: str = "min"  # ours, DAVIS: "min" over pairs 0.57; "directional" (min over directions of the
    #   max over gaps: keeps an object that pauses for one gap) 0.44
    grid_step: int = 8  # ours: spacing (px) of the flow samples the camera is fitted to (6: same IoU, slower)
    ransac_threshold: float = 1.0  # ours: RANSAC reprojection threshold (px)
    max_model_points: int = 300  # ours: samples a camera fit uses at most (more: slower, same IoU)
    min_model_points: int = 12  # ours: fewer textured samples than this and no camera model is fitted
    min_texture: float = 28.0  # ours, tuned: mean |Sobel| (7x7 box) from which a pixel's flow is evidence
    ring_width: float = 0.15  # ours, tuned: border ring (share of each side) that votes for the camera
    noise_k: float = 4.0  # ours, tuned: threshold = max(min_speed * gap, noise_k * background residual level)
    min_speed: float = 0.6  # ours, DAVIS: floor of the threshold, px of residual flow per frame of the gap;
    #   J 0.57 (synthetic seeds 100-101: 0.83); 0.4: 0.55 (0.88); 0.8: 0.58 (0.76): slow objects need it low
    open_px: int = 5  # ours, tuned: opening kernel of the seeds (removes specks)
    half_max: float = 0.3  # ours, tuned: cut each region at this share of its residual level
    half_max_pct: float = 75.0  # ours: percentile of a region's residual (textured pixels) taken as its level
    flat_vote: float = 0.5  # ours, tuned: flat region joins when more than this share of its rim is foreground
    border_vote: float = 1.0  # ours: weight of a flat region's frame-border pixels, voting background
    close_px: int = 11  # ours, tuned: closing kernel (fills gaps between seeds)
    min_region: float = 0.01  # ours: drop regions smaller than this share of the frame
    fill_holes: bool = True  # ours: fill enclosed holes
    seg_scale: int = 2  # ours: segment at 1/seg_scale resolution (4x cheaper; DIS "medium" flow is half-res)
    guide_radius: int = 8  # ours, tuned: guided-filter radius (px) that snaps edges to the image; 0 = off
    guide_eps: float = 0.01  # ours, tuned: guided-filter regulariser (gray in [0, 1])
    fb_check: bool = False  # ours, DAVIS: drop pixels failing forward-backward consistency: J 0.34, 2x flows
    fb_threshold: float = 1.0  # ours: forward-backward error (px) above which a pixel is unreliable
    grabcut: bool = True  # ours, DAVIS: refine with GrabCut on the frame's colours: J 0.53 -> 0.57
    grabcut_scale: int = 3  # ours, DAVIS: GrabCut at 1/3 resolution; 1/2: the same J, slower
    grabcut_iters: int = 1  # ours, DAVIS: GrabCut iterations (2 and 4: the same J, slower)
    grabcut_core_px: int = 15  # ours, DAVIS: erosion (px) of the mask fixed as foreground; none: J 0.33
    grabcut_band_px: int = 15  # ours, DAVIS: band (px) around the mask GrabCut may claim; 30: -0.01
    grabcut_agree: float = 0.7  # ours: keep the motion mask where GrabCut's agrees less (IoU): colours that
    #   do not tell object from background (random textures) otherwise cost 0.3 IoU
    min_fg: float = 0.03  # ours, DAVIS: drop frames with less foreground than this share (Pathak: 0.10,
    #   which keeps 24% of DAVIS frames, whose objects cover 2-12% of the frame; 0.03 keeps 77%)
    max_fg: float = 0.80  # Pathak: drop frames with more foreground than this share
    border_width: float = 0.05  # Pathak: border band, as a share of each side's length
    max_border_fg: float = 0.10  # Pathak: drop frames whose border band is more foreground than this

    def __post_init__(self) -> None:
        if not self.gaps or min(self.gaps) < 1:
            raise ValueError(f"gaps must be positive frame offsets, got {self.gaps!r}")
        if self.combine not in COMBINE:
            raise ValueError(f"unknown combine {self.combine!r}; choose from {', '.join(COMBINE)}")

    @property
    def max_gap(self) -> int:
        return max(self.gaps)

    def offsets(self) -> list[int]:
        """Partner offsets in order of preference: +1, -1, +2, -2, ... (forward only unless bidirectional)."""
        signs = (1, -1) if self.bidirectional else (1,)
        return [sign * gap for gap in sorted(set(self.gaps)) for sign in signs]


COMBINE = ("min", "directional")


QUALITY = {
    "default": MaskConfig(),
    # the method as it was before it met real video: one forward pair 3 frames on, no appearance step
    "fast": MaskConfig(gaps=(3,), bidirectional=False, grabcut=False, min_speed=0.4),
}


def quality_config(name: str) -> MaskConfig:
    if name not in QUALITY:
        raise ValueError(f"unknown quality {name!r}; choose from {', '.join(QUALITY)}")
    return QUALITY[name]
