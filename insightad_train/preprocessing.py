"""Choose the preprocessing from the training images alone, so nothing is tuned to one category by hand.

Brightness target: the median of the images' gray levels. Pose: objects that sit inside the frame are
centred, and rotated onto their principal axis when they are elongated; textures (the part fills the
frame) are left as they are. Crop and input shape follow the parts' measured extent. Every measurement
is the edge's own (``insightad_edge.preprocess``), so training and the edge cannot disagree.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace

import cv2
import numpy as np

from insightad_edge.errors import NotInspectable
from insightad_edge.metadata import CROP_MAX, Preprocess
from insightad_edge.preprocess import brightness_level, find_part, foreground, normalise_brightness, part_axes, prepare_work

log = logging.getLogger(__name__)

ELONGATED = 1.5   # principal-axis ratio above which the angle is well defined
MARGIN = 1.1      # room around the largest part seen in training
OBJECT_SHARE = 0.9  # share of images whose part stays clear of the frame to call the category "objects"
RANGE_FLOOR = 0.5   # where a dark scene's bright end is raised to: an autoencoder learns little from a tenth of
                    # the range (the screw at a tenth of its light: AUROC 0.81; at half, same noise ratio: 0.95)


def _round16(value: float) -> int:
    return max(16, round(value / 16.0) * 16)


def input_shape(pixels: int, aspect: float) -> tuple[int, int]:
    """(height, width), multiples of 16, about ``pixels`` in area with width/height near ``aspect``."""
    width = _round16(math.sqrt(pixels * aspect))
    return _round16(pixels / width), width


def derive_preprocess(images: list[np.ndarray], image_size: int, frame_size: tuple[int, int], align: str = "auto",
                      photometric: str = "median_scale", channels: int = 1) -> tuple[Preprocess, str]:
    """Measure the training images (gray, resized keeping their aspect to one short side) and return the
    preprocessing they call for, and why that alignment. The working size is chosen so the crop is resampled
    to the input at about 1:1.
    """
    height, width = frame_size
    whole = (width / min(frame_size), height / min(frame_size))  # the whole frame, in working sizes
    base = Preprocess(input_size=input_shape(image_size * image_size, whole[0] / whole[1]), work_size=image_size,
                      photometric=photometric, channels=channels, frame_size=tuple(frame_size), crop=whole)
    if photometric != "none":
        base = replace(base, photometric_target=brightness_target(images))
    normalised = [normalise_brightness(w, base) for w in images]
    dark = _foreground_is_dark(normalised)
    chosen = align == "auto"
    why = "asked for"
    if chosen:
        align, why = choose_alignment(normalised, dark, base, image_size)
    if align == "none":
        region = where_parts_lie(normalised) if chosen else None  # `--align none` keeps the whole frame
        spec = replace(base, foreground_dark=dark, align="none")
        spec = region_crop(spec, region or (0.0, 0.0, *whole), whole, image_size)
        return spec, why if region is None else (
            f"{why}; cropped to where anything departs from the background in the training images "
            f"({region[2] - region[0]:.2f} x {region[3] - region[1]:.2f} of the short side; the frame: "
            f"{whole[0]:.2f} x {whole[1]:.2f})")
    return aligned(normalised, dark, align, base, image_size), why


def partless(images: list[np.ndarray], photometric: str = "median_scale") -> dict[int, str]:
    """The frames among ``images`` (gray, at one short side) in which the edge finds no part at all, by index, and
    why: a black frame, or nothing standing out of a flat background (an empty fixture). A good image must show a
    good part; with one of these among them no pose or extent can be measured."""
    if not images:
        return {}
    base = Preprocess(photometric=photometric, photometric_target=brightness_target(images))
    found, normalised = {}, {}
    for i, image in enumerate(images):
        try:
            normalised[i] = normalise_brightness(image, base)
        except NotInspectable as exc:
            found[i] = exc.reason
    dark = _foreground_is_dark(list(normalised.values()))
    for i, image in normalised.items():
        try:
            find_part(image, dark)
        except NotInspectable as exc:
            found[i] = exc.reason
    return found


def brightness_target(images: list[np.ndarray]) -> float:
    """The median gray level every image is scaled to: the images' own, raised for a dark scene until its
    bright end (99.5th percentile) reaches RANGE_FLOOR, so the model sees contrast in numbers it can learn from."""
    levels = [max(brightness_level(w), 1e-6) for w in images]
    target = float(np.median(levels))
    top = target * float(np.median([np.percentile(w, 99.5) / level for w, level in zip(images, levels)]))
    return min(max(target * max(1.0, RANGE_FLOOR / max(top, 1e-6)), 0.05), 1.0)


def where_parts_lie(normalised: list[np.ndarray]) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1), in short sides from the top left corner: the box, with MARGIN, around every pixel that is
    not background in the training images; None when that is most of the frame (REGION_SHARE_MAX), where a crop
    would gain the model little. A pixel is background when its mean squared departure from each image's
    background level (the frame edge's median, on copies blurred by sigma 2) is within REGION_SIGMAS of the frame
    edge's own, or below REGION_FLOOR. Averaged over the images, a dim body (12 gray levels under noise of 4) or
    a part that lies there in only some shots stands out, where one image's threshold would miss it; with too
    few images to tell, the box grows, which costs resolution, never the part. A part that cannot be aligned
    on then costs the model no pixels on empty background (a tread 0.33 x 0.66 of its frame: 1.6 times the
    resolution)."""
    departure = np.zeros(normalised[0].shape[:2], np.float64)  # per pixel, over the images
    for image in normalised:
        smooth = cv2.GaussianBlur(image, (0, 0), 2.0)
        departure += (smooth - np.median(frame_edge(smooth))) ** 2
    departure /= len(normalised)
    edge = frame_edge(departure)
    ratio = 1.0 + REGION_SIGMAS * math.sqrt(2.0 / len(normalised))  # a mean of n squared normal deviates: 1 ± sqrt(2/n)
    part = (departure > max(ratio * float(np.median(edge)), REGION_FLOOR ** 2)).astype(np.uint8)
    ys, xs = np.nonzero(cv2.morphologyEx(part, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)))
    if not len(xs):
        return None
    short = min(departure.shape)
    height, width = departure.shape[0] / short, departure.shape[1] / short
    half_w, half_h = (xs.max() + 1 - xs.min()) * MARGIN / (2 * short), (ys.max() + 1 - ys.min()) * MARGIN / (2 * short)
    cx, cy = (xs.min() + xs.max() + 1) / (2 * short), (ys.min() + ys.max() + 1) / (2 * short)
    box = (max(0.0, cx - half_w), max(0.0, cy - half_h), min(width, cx + half_w), min(height, cy + half_h))
    if (box[2] - box[0]) * (box[3] - box[1]) > REGION_SHARE_MAX * width * height:
        return None
    return tuple(float(v) for v in box)


def region_crop(spec: Preprocess, region: tuple[float, float, float, float], whole: tuple[float, float],
                image_size: int) -> Preprocess:
    """The unaligned crop of ``region`` (x0, y0, x1, y1 in short sides) in a frame of ``whole`` (width, height in
    short sides; the whole frame is a region too), and its input shape."""
    x0, y0, x1, y1 = region
    width, height = whole
    in_h, in_w = input_shape(image_size * image_size, (x1 - x0) / (y1 - y0))
    return replace(spec, crop=(x1 - x0, y1 - y0), crop_offset=((x0 + x1 - width) / 2, (y0 + y1 - height) / 2),
                   input_size=(in_h, in_w), work_size=_round16(max(in_w / (x1 - x0), in_h / (y1 - y0))))


def aligned(normalised: list[np.ndarray], dark: bool, align: str, base: Preprocess, image_size: int) -> Preprocess:
    """The crop around the aligned part that holds every training part with a margin, and its input shape."""
    analysis = min(normalised[0].shape[:2])
    bounds = np.array([_bounds(w, dark, align) for w in normalised])  # u_min, u_max, v_min, v_max
    centre = np.median((bounds[:, 0::2] + bounds[:, 1::2]) / 2.0, axis=0)
    half = np.maximum(bounds[:, 1::2].max(axis=0) - centre, centre - bounds[:, 0::2].min(axis=0))
    crop_w, crop_h = (min(CROP_MAX, 2.0 * h * MARGIN / analysis) for h in half)
    in_h, in_w = input_shape(image_size * image_size, crop_w / crop_h)
    return replace(base, foreground_dark=dark, align=align, crop=(float(crop_w), float(crop_h)),
                   crop_offset=(float(centre[0] / analysis), float(centre[1] / analysis)), input_size=(in_h, in_w),
                   work_size=_round16(max(in_w / crop_w, in_h / crop_h)))


def choose_alignment(normalised: list[np.ndarray], dark: bool, base: Preprocess, image_size: int) -> tuple[str, str]:
    """none, center or center_rotate, and why; every step is checked on the training images themselves.

    Objects only (a part clear of the frame's edge in 90% of the images), segmented clearly (one blob that
    stands out, in 90% of them) and whole (not a bright piece of a dimmer part), held whole by the crop; then
    each alignment must make the training images agree better (less pixel-wise spread) than the simpler one by
    10%, rotation only for elongated parts.
    """
    stats = [_part_stats(w, dark) for w in normalised]
    inside = [s for s in stats if s is not None]
    if len(inside) < OBJECT_SHARE * len(stats):
        return "none", f"the part fills the frame or touches its edge in {1 - len(inside) / len(stats):.0%} of the images"
    clear = [_clear_part(w, dark) for w in normalised]
    if np.mean(clear) < OBJECT_SHARE:
        return "none", (f"no single clear part in {1 - np.mean(clear):.0%} of the images: the segmentation is not "
                        "reliable enough to align on")
    whole = [_found_whole(w, dark) for w in normalised]
    if np.mean(whole) < OBJECT_SHARE:
        return "none", (f"the segmented part is a piece of what stands out from the background in "
                        f"{1 - np.mean(whole):.0%} of the images (a bright piece of a dimmer part): a crop around it "
                        "would cut the rest away")
    ratio = float(np.median([s[2] for s in inside]))
    modes = ["center"] + (["center_rotate"] if ratio > ELONGATED else [])
    specs = {mode: aligned(normalised, dark, mode, base, image_size) for mode in modes}
    specs["none"] = replace(specs[modes[-1]], align="none")
    spread = {mode: agreement(normalised, spec) for mode, spec in specs.items()}
    chosen = "none"
    for mode in modes:
        if spread[mode] < spread[chosen] / AGREEMENT_GAIN:
            chosen = mode
    if chosen != "none":
        held = np.mean([_held_whole(w, dark, specs[chosen]) for w in normalised])
        if held < OBJECT_SHARE:
            return "none", f"a crop around the aligned part would cut it in {1 - held:.0%} of the images"
    numbers = ", ".join(f"{mode} {value:.3f}" for mode, value in spread.items())
    return chosen, f"axis ratio {ratio:.2f}; pixel spread across the training images {numbers}"


AGREEMENT_GAIN = 1.1   # an alignment must cut the pixel spread by this factor to be worth its risk
MIN_CONTRAST = 0.6     # Otsu separability below which "the part" is noise (screw: 0.75-0.83; noise: 0.64)
AGREEMENT_PIXELS = 48 * 48
BACKGROUND_SIGMAS = 12.0  # how far beyond the background's level, in its noise, a pixel must lie to show something
BACKGROUND_STEP = 0.05    # ... and at least this far, in brightness-normalised gray levels
REGION_SHARE_MAX = 0.8    # a region over this share of the frame is left whole: cropping it gains the model little
REGION_SIGMAS = 6.0       # how far beyond the frame edge's mean squared departure, in the spread of a mean of as many
                          # images, a pixel's must lie for it not to be background
REGION_FLOOR = 0.01       # ... and a root mean square departure of this many normalised gray levels (on a clean
                          # background a fraction of a gray level would otherwise count, and a lamp's slow falloff)
WHOLE_SHARE = 0.4         # the segmented part's least share of what shows around it (screw: 0.66 or more in 9 of 10
                          # images; a bright band over a third of a dim body: 0.29)


def agreement(normalised: list[np.ndarray], spec: Preprocess, count: int = 48) -> float:
    """How much the training images still differ pixel by pixel once preprocessed with ``spec``: per-pixel
    variance across images over total variance (0: identical, about 1: unrelated)."""
    analysis = min(normalised[0].shape[:2])
    small = replace(spec, work_size=analysis, photometric="none",
                    input_size=input_shape(AGREEMENT_PIXELS, spec.crop[0] / spec.crop[1]))
    step = max(1, len(normalised) // count)
    inputs = []
    for image in normalised[::step]:
        try:
            inputs.append(prepare_work(image, small)[0])
        except NotInspectable:
            continue
    stack = np.stack(inputs).astype(np.float64)
    return float(stack.var(axis=0).mean() / max(stack.var(), 1e-12))


def _clear_part(image: np.ndarray, dark: bool) -> bool:
    """One blob that stands out from its background: what alignment can trust."""
    try:
        part = find_part(image, dark)
    except NotInspectable:
        return False
    return part.contrast >= MIN_CONTRAST and part.blob.sum() >= 0.9 * part.mask.sum()


def _found_whole(image: np.ndarray, dark: bool) -> bool:
    """Whether the segmentation found the whole part and not a bright piece of it (a tread on black rubber)."""
    try:
        return whole_share(image, dark) >= WHOLE_SHARE
    except NotInspectable:
        return False


def whole_share(image: np.ndarray, dark: bool) -> float:
    """The segmented part's share of what a background model (the frame edge's level and noise) finds in the
    regions the part touches: near 1 when the segmentation found the whole part, low for a bright piece of it."""
    part = find_part(image, dark)
    smooth = cv2.GaussianBlur(image, (0, 0), 2.0)
    border = frame_edge(smooth)
    level = float(np.median(border))
    noise = 1.4826 * float(np.median(np.abs(border - level)))
    rise = (level - smooth) if dark else (smooth - level)
    shown = (rise > max(BACKGROUND_SIGMAS * noise, BACKGROUND_STEP)).astype(np.uint8)
    _, labels = cv2.connectedComponents(cv2.morphologyEx(shown, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)))
    touched = np.unique(labels[part.blob > 0])
    around = np.isin(labels, touched[touched > 0]).sum()
    return float(part.blob.sum() / around) if around else 1.0


def frame_edge(image: np.ndarray) -> np.ndarray:
    """The pixels along the frame's four sides: where the background shows, for parts inside the frame."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def _held_whole(image: np.ndarray, dark: bool, spec: Preprocess) -> bool:
    """Whether the crop holds (97% of) everything segmented in this image."""
    _, matrix = prepare_work(image, replace(spec, work_size=min(image.shape[:2]), photometric="none"))
    ys, xs = np.nonzero(foreground(image, dark)[1])
    u, v = matrix @ np.vstack([xs, ys, np.ones_like(xs)]).astype(np.float64)
    out_h, out_w = spec.input_size
    return bool(np.mean((u >= 0) & (u < out_w) & (v >= 0) & (v < out_h)) >= 0.97)


def _foreground_is_dark(images: list[np.ndarray]) -> bool:
    """The part is whatever differs from the frame's border: dark parts on a bright background, or the reverse."""
    votes = []
    for image in images:
        border = frame_edge(image)
        votes.append(np.median(border) > np.mean(image))
    return bool(np.mean(votes) >= 0.5) if votes else True


def _part_stats(image: np.ndarray, dark: bool):
    """(area share, border contact share, axis ratio) of the segmented part, or None if it fills the frame."""
    mask = foreground(image, dark)[1]
    border = frame_edge(mask)
    share = float(mask.mean())
    if share == 0 or share > 0.6 or border.mean() > 0.02:
        return None
    ys, xs = np.nonzero(mask)
    eig = np.linalg.eigvalsh(np.cov(np.vstack([xs, ys]).astype(np.float64)))
    return share, float(border.mean()), math.sqrt(eig[1] / max(eig[0], 1e-9))


def _bounds(image: np.ndarray, dark: bool, align: str) -> tuple[float, float, float, float]:
    """Extent of the aligned part along and across its axis, from its centroid (specks of dust left out)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground(image, dark)[1])
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if count > 1 else 0
    cx, cy, angle = part_axes(align, image.shape, find_part(image, dark))
    ys, xs = np.nonzero(labels == largest)
    u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
    v = -(xs - cx) * math.sin(angle) + (ys - cy) * math.cos(angle)
    return float(u.min()) - 1, float(u.max()) + 1, float(v.min()) - 1, float(v.max()) + 1
