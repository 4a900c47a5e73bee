"""Can this frame be judged at all? The limits come from the good training images, widened by a margin.

A frame that shows no part, a part cut by the frame's edge, a part of another size, an exposure the
brightness normalisation cannot undo, too few pixels for the detail the model works at, or a blur gets no
verdict: the model would only be guessing. Measured on the MVTec screw (320 training images, 160 test
images): the part's contrast (Otsu separability) is 0.75-0.83 on every image, 0.39-0.63 on frames of
background alone with 1 to 10 gray levels of sensor noise; the margins below keep every training and test
image inspectable and refuse those.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .metadata import Calibration, Inspection, ModelMetadata, Preprocess
from .preprocess import FrameStats

# One place for every margin: how far outside the training images' range a frame may still be judged.
EXPOSURE_FACTOR = 2.0      # brightness within [darkest / 2, brightest * 2]: the gain can undo that much
SATURATED_MARGIN = 0.05    # up to 5 points more clipped pixels than any training image
CONTRAST_MARGIN = 0.05     # the part may stand out a little less than in the least clear training image
PART_SHARE_MARGIN = 0.10   # the largest blob may hold 10 points less of the segmented pixels
AREA_FACTOR = 1.5          # the part's area within [smallest / 1.5, largest * 1.5]
BORDER_MARGIN = 0.02       # the part may cover 2 points more of the frame's edge
OUTSIDE_MARGIN = 0.10      # 10 points more of the model's input region may fall outside the frame
ENLARGEMENT_MARGIN = 1.1   # a frame may be enlarged 10% more than the training frames were (or than not at all)
SHARPNESS_FACTOR = 2.0     # sharpness down to half the least sharp training image's (kept in the drift reference)
BEYOND_MARGIN = 0.02       # 2% of a frame may lie beyond the training frames' view (sizes a few pixels apart)
OTHERS_MARGIN = 0.25       # a blob elsewhere in the frame may be a quarter of the part's size more than in training


def limits_from(stats: Sequence[FrameStats]) -> Inspection:
    """The inspection limits for a model trained on frames with these statistics."""
    def values(name):
        found = [getattr(s, name) for s in stats if getattr(s, name) is not None]
        return np.array(found, np.float64) if found else None

    brightness, contrast, share = values("brightness"), values("contrast"), values("part_share")
    area, border = values("part_area"), values("border")
    return Inspection(
        brightness=(float(brightness.min() / EXPOSURE_FACTOR), float(min(1.0, brightness.max() * EXPOSURE_FACTOR))),
        saturated_max=float(min(1.0, values("saturated").max() + SATURATED_MARGIN)),
        contrast_min=None if contrast is None else float(max(0.0, contrast.min() - CONTRAST_MARGIN)),
        part_share_min=None if share is None else float(max(0.0, share.min() - PART_SHARE_MARGIN)),
        part_area=None if area is None else (float(area.min() / AREA_FACTOR), float(area.max() * AREA_FACTOR)),
        border_max=None if border is None else float(min(1.0, border.max() + BORDER_MARGIN)),
        outside_max=float(min(1.0, values("outside").max() + OUTSIDE_MARGIN)),
    )


def strays(stats: Sequence[FrameStats], meta: ModelMetadata) -> dict[int, list[str]]:
    """The good images (by index) a model whose limits came from the rest would give no verdict, and why.

    Limits span every image they come from, so one empty fixture or other part filed among the good images widens
    them until frames like it are judged; training names them. Each is found by leaving it out, round after round
    until no new one is (a stray can hide a second that differs less from it than from the rest); never more than
    half of them. Only an image holding the least or greatest value of a statistic can fall outside limits taken
    from the others, so only those are left out: 3000 images take a tenth of a second, not a quarter of a minute.
    """
    found: dict[int, list[str]] = {}
    while True:
        kept = [i for i in range(len(stats)) if i not in found]
        new = {}
        for i in _extremes(stats, kept):
            others = [stats[j] for j in kept if j != i]
            judge = replace(meta, inspection=limits_from(others), calibration=Calibration.measured((), others))
            why = problems(stats[i], judge)
            if why:
                new[i] = why
        if not new or 2 * (len(found) + len(new)) > len(stats):
            return found
        found |= new


def _extremes(stats: Sequence[FrameStats], kept: list[int]) -> list[int]:
    """The images among ``kept`` that hold the least or the greatest value of some statistic."""
    holders = set()
    for name in FrameStats.__dataclass_fields__:
        values = [(getattr(stats[i], name), i) for i in kept if getattr(stats[i], name) is not None]
        if values:
            holders |= {min(values)[1], max(values)[1]}
    return sorted(holders)


def most_enlarged(spec: Preprocess) -> float:
    """How many times a frame may be enlarged to the working size. A frame enlarged more lacks the detail the
    model works at: on the MVTec screw, frames shrunk to 1/1.5, 1/2 and 1/3 of the working size let 31, 37
    and 51 of 119 defects pass against 24 at full size, while every good part still passed."""
    trained = spec.work_size / min(spec.frame_size) if spec.frame_size else 1.0
    return ENLARGEMENT_MARGIN * max(1.0, trained)


def least_sharpness(meta: ModelMetadata) -> float | None:
    """The sharpness a frame must keep: half the least sharp good training image's, from the drift reference the
    model carries (None without one). On the MVTec screw a frame blurred by sigma 2, 4 or 8 pixels let 32, 52 and
    80 of 119 defects pass against 24, while every good part still passed; its sharpness fell to a half, a tenth
    and a hundredth of the least sharp training image's."""
    sample = meta.calibration.stats.get("sharpness") if meta.calibration is not None else None
    return sample[0] / SHARPNESS_FACTOR if sample else None  # the reference's samples are sorted (checked at load)


def most_others(meta: ModelMetadata) -> float | None:
    """How large, as a share of the part's size, a blob elsewhere in the frame may be: the largest beside any good
    training part, plus OTHERS_MARGIN; kept in the drift reference (None without one, as in models made before it
    was measured). The model looks at one part: a second one anywhere in the frame is never judged, and on the
    MVTec screw 69 of 119 defective test images set beside a good one passed as ok, the good one judged
    (``scripts/check_frames.py``); no screw image, training or test, has a blob beside the screw above 0.3% of it."""
    sample = meta.calibration.stats.get("others") if meta.calibration is not None else None
    return sample[-1] + OTHERS_MARGIN if sample else None


def problems(stats: FrameStats, meta: ModelMetadata) -> list[str]:
    """Why this frame cannot be judged by the model META describes, in words an operator can act on; empty when
    it can."""
    return frame_problems(stats, meta) + part_problems(stats, meta)


def frame_problems(stats: FrameStats, meta: ModelMetadata) -> list[str]:
    """What keeps any frame of this camera from being judged, whatever it shows: too coarse, a wider view than the
    model looks at, exposure, clipping."""
    found, limits = [], meta.inspection
    if stats.beyond > BEYOND_MARGIN:
        found.append(f"the frame shows more than the training frames did: {stats.beyond:.0%} of it lies beyond their "
                     "view, which is all the model looks at, so a defect there would pass; send frames of the training "
                     "frames' shape (or crop them so), or train on frames like this one")
    if stats.scale > most_enlarged(meta.preprocess):
        found.append(f"the frame is too coarse: enlarged {stats.scale:.2g} times to the model's working size (at most "
                     f"{most_enlarged(meta.preprocess):.2g}), it lacks the detail the model inspects at; is this a "
                     "camera's preview stream or a thumbnail? send frames at full resolution")
    low, high = limits.brightness
    if stats.brightness < low:
        found.append(f"too dark: median gray level {stats.brightness:.3f} is below {low:.3f} "
                     "(half the darkest training image); check the lighting and exposure")
    elif stats.brightness > high:
        found.append(f"too bright: median gray level {stats.brightness:.3f} is above {high:.3f}; check the exposure")
    if stats.saturated > limits.saturated_max:
        found.append(f"over-exposed: {stats.saturated:.0%} of the pixels are clipped white "
                     f"(at most {limits.saturated_max:.0%} may be)")
    return found


def narrow_depth(frame: np.ndarray, stats: FrameStats | None, meta: ModelMetadata) -> str | None:
    """Why a 16-bit frame refused as dark may not be dark at all: its values fit in 10, 12 or 14 bits, as a Mono10 or
    Mono12 camera's do in the uint16 arrays GenICam libraries hand over (and in files some viewers save), so read as
    16 bits it is 4 to 64 times darker than the scene. Said beside the reason, never guessed and rescaled: a frame
    that is dark indeed has small values too."""
    if frame.dtype != np.uint16 or not 0 < (top := int(frame.max())) < 1 << 14:
        return None
    dark = stats is None or (meta.inspection is not None and stats.brightness < meta.inspection.brightness[0])
    bits = next(b for b in (10, 12, 14) if top < 1 << b)
    return (f"if this is a {bits}-bit camera's frame in 16 bits (its values reach only {top} of 65535), pass it "
            f"scaled to 16 bits (frame << {16 - bits}), or set the camera to Mono8 or Mono16") if dark else None


def no_part(stats: FrameStats, meta: ModelMetadata) -> bool:
    """Whether the frame shows no part at all (an empty fixture): it stands out less than any training part did."""
    return meta.inspection.contrast_min is not None and (stats.contrast or 0.0) < meta.inspection.contrast_min


def cut_off(stats: FrameStats, meta: ModelMetadata) -> bool:
    """Whether the part runs over the frame's edge, or the region the model inspects does."""
    limits = meta.inspection
    return (limits.border_max is not None and (stats.border or 0.0) > limits.border_max) \
        or stats.outside > limits.outside_max


def part_problems(stats: FrameStats, meta: ModelMetadata) -> list[str]:
    """What keeps the part in this frame from being judged: focus, no part, several, its size, cut by the edge."""
    limits = meta.inspection
    if no_part(stats, meta):  # the rest would describe the background as a part: "out of focus", "larger"
        return [f"no clear part in view (contrast {stats.contrast or 0.0:.2f} < {limits.contrast_min:.2f}): "
                "is the fixture empty, or the part out of focus?"]
    found = []
    needed = least_sharpness(meta)
    if needed is not None and stats.sharpness < needed:
        found.append(f"out of focus or blurred: sharpness {stats.sharpness:.2g} is below {needed:.2g} (half the "
                     "least sharp training image's); check the focus, the part's height, and motion blur")
    if limits.part_share_min is not None and (stats.part_share or 0.0) < limits.part_share_min:
        found.append(f"no single part in view (the largest blob holds {stats.part_share or 0.0:.0%} of what was "
                     f"segmented, at least {limits.part_share_min:.0%} expected): several parts or clutter?")
    if (most := most_others(meta)) is not None and (stats.others or 0.0) > most:
        found.append(f"another part in view: something {stats.others:.0%} the size of the part lies elsewhere in the "
                     f"frame (at most {most:.0%} beside a training part), and the model judges one part, so the other "
                     "would pass unjudged; one part at a time in view")
    if limits.part_area is not None and stats.part_area is not None:
        small, large = limits.part_area
        if stats.part_area < small:
            found.append(f"the part is {1 - stats.part_area / small:.0%} smaller than the training parts allow: "
                         "partly hidden, or the camera is further away")
        elif stats.part_area > large:
            found.append(f"the part is {stats.part_area / large - 1:.0%} larger than the training parts allow: "
                         "the camera is closer, or something else is in view")
    if limits.border_max is not None and (stats.border or 0.0) > limits.border_max:
        found.append("the part is cut by the frame's edge")
    if stats.outside > limits.outside_max:
        found.append(f"{stats.outside:.0%} of the region the model inspects lies outside the frame (at most "
                     f"{limits.outside_max:.0%}): " + ("the part sits too close to the edge" if meta.preprocess.align != "none"
                                                        else "the frame shows less than the training frames did"))
    return found
