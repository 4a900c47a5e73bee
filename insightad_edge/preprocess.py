"""Decode any supported image and turn it into the model's input, driven only by the model's metadata.

Training calls the same functions, so the edge sees exactly what the model was trained on.
Formats are told apart by dtype and channel count, never by pixel values. Alongside the input, the
frame's statistics come out (exposure, the part's contrast, size and place, sharpness): the
inspectability check and the drift monitor read them, so no frame is measured twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from .config import MAX_FRAME_PIXELS
from .errors import ImageError, NotInspectable
from .metadata import Inspection, Preprocess

ImageSource = Union[str, PathLike, bytes, bytearray, memoryview, np.ndarray]

MIN_SIDE = 8
BLACK_LEVEL = 1.0 / 255.0          # a median gray level below this is a black frame
SATURATED_LEVEL = 1.0 - 0.5 / 255  # a pixel at or above this is clipped
_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


@dataclass(frozen=True)
class FrameStats:
    """What the edge measured on one frame. Part statistics are None for models without a part (textures).

    brightness: median gray level before normalisation; saturated: share of clipped pixels;
    contrast: how well the part stands out (Otsu's separability, 0..1); part_share: the part's share of
    everything segmented inside the model's input region; part_area: its area in working sizes squared; border: share of the
    frame's edge it covers; part_x, part_y: its centroid as a share of the frame's width and height; others: the
    next largest blob's size, anywhere in the frame, as a share of the part's (another part in view);
    outside: share of the model's input region that lies outside the frame; sharpness: variance of the
    Laplacian of the model input; scale: working pixels per frame pixel; beyond: share of the frame lying beyond
    the view of the training frames, which no model input covers (a wider view, for a model that does not align).
    """

    brightness: float
    saturated: float
    outside: float
    sharpness: float
    scale: float
    beyond: float = 0.0
    contrast: Optional[float] = None
    part_share: Optional[float] = None
    part_area: Optional[float] = None
    border: Optional[float] = None
    part_x: Optional[float] = None
    part_y: Optional[float] = None
    others: Optional[float] = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Prepared:
    """A model input (channels, height, width), the 2x3 affine map from original pixels to it, and the stats."""

    input: np.ndarray
    transform: np.ndarray
    image_shape: tuple[int, int]
    stats: FrameStats


@dataclass(frozen=True)
class Part:
    """The segmented part: centroid and principal-axis angle (heavier end to -x), and how clear it is.

    ``mask`` is everything segmented, ``blob`` the part itself (the largest blob), both uint8 working images;
    ``others`` the next largest blob's size as a share of the part's, anywhere in the frame (0 when there is none).
    """

    cx: float
    cy: float
    angle: float
    contrast: float
    area: float
    border: float
    others: float
    mask: np.ndarray = field(repr=False, compare=False)
    blob: np.ndarray = field(repr=False, compare=False)


def decode(source: ImageSource, channels: int = 1) -> np.ndarray:
    """Return a float32 image in [0, 1] from a path, encoded bytes or a decoded array.

    ``channels`` 1 gives gray (height, width), 3 gives BGR (height, width, 3). Arrays: uint8 and
    uint16 are scaled by their full range, floats are taken as already in [0, 1]; 2-D is gray,
    3 channels are BGR, 4 are BGRA (alpha ignored), as OpenCV delivers them.
    """
    return to_float(load(source), channels)


def _last_line(exc: Exception) -> str:
    """OpenCV's message without its source file and line: ``validateInputImageSize: Assertion failed ...``."""
    text = str(exc).strip().splitlines()[-1]
    return text.split(" error: ", 1)[-1]


def load(source: ImageSource) -> np.ndarray:
    """The image as OpenCV decodes it (any depth and channel count), from a path, bytes or an array."""
    if isinstance(source, np.ndarray):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "image bytes"
    elif isinstance(source, (str, PathLike)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
        name = str(path)
    else:
        raise ImageError(f"cannot score a {type(source).__name__}: pass a path, encoded bytes or a numpy array")
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # the decoder refused the file's header: an unreadable image, never a crash
        if "MAX_IMAGE_PIXELS" in str(exc):  # OpenCV's own size limit (config.before_libraries_load), before it allocates
            raise ImageError(f"{name} is an image of more than {MAX_FRAME_PIXELS / 1e6:.0f} megapixels: refused before "
                             "decoding (a camera frame is smaller: is this file what the camera wrote?)") from None
        raise ImageError(f"{name} is not a readable image (its header is corrupt: {_last_line(exc)})") from None
    if array is None:
        raise ImageError(f"{name} is not a readable image (corrupt, truncated or an unsupported format)")
    return array


def to_float(array: np.ndarray, channels: int = 1) -> np.ndarray:
    """Convert an OpenCV-style array (gray, BGR or BGRA; 8-bit, 16-bit or float) to float32 gray or BGR."""
    if array.ndim >= 2 and array.shape[0] * array.shape[1] > MAX_FRAME_PIXELS:  # before a float copy 4x its size
        raise ImageError(f"image is {array.shape[1]}x{array.shape[0]} pixels, more than the "
                         f"{MAX_FRAME_PIXELS / 1e6:.0f} megapixels insightad judges")
    if array.dtype in (np.uint8, np.uint16):  # scaled in place: one float copy of a large frame, not two
        image = array.astype(np.float32)
        image *= np.float32(1.0 / np.iinfo(array.dtype).max)
    elif array.dtype in (np.float32, np.float64):
        image = np.asarray(array, dtype=np.float32)
        low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
        if not (0.0 <= low and high <= 1.0):  # also NaN; never rescaled by a guess, refused with the numbers
            raise ImageError(f"a float image must lie in [0, 1]; this one spans {low:g} to {high:g} "
                             "(scale 8-bit values by 1/255, or pass the uint8 array)")
    else:
        raise ImageError(f"image dtype {array.dtype} is not supported (use uint8, uint16 or float in [0, 1])")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = {(3, 1): cv2.COLOR_BGR2GRAY, (4, 1): cv2.COLOR_BGRA2GRAY, (4, 3): cv2.COLOR_BGRA2BGR}
        key = (image.shape[2], channels)
        image = cv2.cvtColor(image, code[key]) if key in code else image
    elif image.ndim == 2 and channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim != 2:
        raise ImageError(f"image shape {array.shape} is not gray, BGR or BGRA")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageError(f"image is {image.shape[1]}x{image.shape[0]} pixels, too small to inspect")
    return np.ascontiguousarray(image)


def lacks_colour(image: np.ndarray) -> bool:
    """Whether a BGR frame's three channels are equal (every 4th pixel): a gray image made BGR, or a colour camera
    in mono mode. A real colour frame's sensor noise alone makes them differ."""
    sample = image[::4, ::4]
    return image.ndim == 3 and np.array_equal(sample[..., 0], sample[..., 1]) and np.array_equal(sample[..., 1], sample[..., 2])


def gray_of(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def brightness_level(gray: np.ndarray) -> float:
    """The frame's brightness as the normalisation sees it: the median gray level (every 4th pixel)."""
    return float(np.median(gray[::4, ::4]))


def work_scales(shape: tuple[int, ...], spec: Preprocess) -> list[tuple[float, float]]:
    """Candidate (x, y) resize factors from frame to working pixels.

    Schema 1 squashes the frame to a square. Schema 2 keeps the aspect: either the frame has the
    training frames' pixel scale (a crop or a padded copy from the same camera), or its short side spans
    what theirs did (a resized copy); when the two differ the part's size decides between them.
    """
    height, width = shape[:2]
    if spec.frame_size is None:
        return [(spec.work_size / width, spec.work_size / height)]
    same_pixels = spec.work_size / min(spec.frame_size)
    same_view = spec.work_size / min(height, width)
    if math.isclose(same_pixels, same_view, rel_tol=1e-3):
        return [(same_pixels, same_pixels)]
    if spec.align == "none":  # a texture has no part to measure its scale by
        return [(same_view, same_view)]
    return [(same_pixels, same_pixels), (same_view, same_view)]


def to_work(image: np.ndarray, spec: Preprocess, scale: tuple[float, float] | None = None) -> np.ndarray:
    """Resize a frame to working pixels (the first candidate scale unless one is given); training caches this."""
    fx, fy = scale or work_scales(image.shape, spec)[0]
    height, width = image.shape[:2]
    size = (max(1, round(width * fx)), max(1, round(height * fy)))
    shrinking = size[0] < width or size[1] < height
    flag = _INTERPOLATION[spec.interpolation] if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=flag)


def prepare(image: np.ndarray, spec: Preprocess, inspection: Inspection | None = None) -> Prepared:
    """Full preprocessing of a decoded image: working size, brightness, pose, crop, input size, stats.

    ``inspection`` (the model's limits) lets the part's size choose the scale of a frame whose size
    differs from the training frames'.
    """
    candidates = work_scales(image.shape, spec)
    views = [_view(image, spec, scale) for scale in candidates]
    view = views[0]
    if len(views) > 1 and inspection is not None and inspection.part_area is not None:
        expected = math.sqrt(inspection.part_area[0] * inspection.part_area[1])
        view = min(views, key=lambda v: abs(math.log(max(v[2].area, 1e-9) / expected)))
    work, factor, part, scale = view
    tensor, matrix, outside, sharpness, share = _crop(work, factor, part, spec)
    to_work_map = np.array([[scale[0], 0, 0], [0, scale[1], 0]], np.float64)
    gray = gray_of(work)
    stats = FrameStats(brightness=brightness_level(gray), saturated=float(np.mean(gray >= SATURATED_LEVEL)),
                       outside=outside, sharpness=sharpness, scale=scale[0], beyond=beyond_view(work.shape, spec),
                       **({} if part is None else {"contrast": part.contrast, "part_share": share,
                                                   "part_area": part.area, "border": part.border,
                                                   "part_x": part.cx / work.shape[1], "part_y": part.cy / work.shape[0],
                                                   "others": part.others}))
    return Prepared(tensor, _compose(matrix, to_work_map), image.shape[:2], stats)


def beyond_view(work_shape: tuple[int, ...], spec: Preprocess) -> float:
    """The share of a working image lying beyond the view of the training frames, centred on it: what a model that
    does not align never looks at in a frame wider or taller than those (a texture's input covers their view, and
    the crop follows no part into the rest). 0 for a model that aligns, whose crop follows the part."""
    if spec.align != "none" or spec.frame_size is None:  # schema 1 squashes any frame into the view
        return 0.0
    shown = [side / spec.work_size for side in work_shape[:2]]  # (height, width) in working sizes
    seen = [side / min(spec.frame_size) for side in spec.frame_size]
    return 1.0 - min(1.0, seen[0] / shown[0]) * min(1.0, seen[1] / shown[1])


def _view(image: np.ndarray, spec: Preprocess, scale: tuple[float, float]):
    """(working image, brightness factor, part or None, scale) of a frame at one candidate scale. A frame in which
    nothing at all stands out is refused with what was measured on it (no part: contrast 0), so that whoever
    reads the refusal can tell an empty fixture from a camera that sees nothing (a black frame has no stats)."""
    work = to_work(image, spec, scale)
    gray = gray_of(work)
    factor = brightness_factor(gray, spec)
    try:
        return work, factor, _find(work, factor, spec), scale
    except NotInspectable as exc:
        raise NotInspectable(exc.reason, FrameStats(
            brightness=brightness_level(gray), saturated=float(np.mean(gray >= SATURATED_LEVEL)), outside=0.0,
            sharpness=0.0, scale=scale[0], contrast=0.0)) from None


def prepare_work(work: np.ndarray, spec: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess an image already at working size; returns the input and the work->input map (training)."""
    factor = brightness_factor(gray_of(work), spec)
    tensor, matrix, *_ = _crop(work, factor, _find(work, factor, spec), spec)
    return tensor, matrix


def _find(work: np.ndarray, factor: float, spec: Preprocess) -> Part | None:
    """The part the model aligns on (None when it does not align); schema 1 took the pose of all it segmented."""
    if spec.align == "none":
        return None
    gray = np.clip(gray_of(work) * factor, 0.0, 1.0)
    return find_part(gray, spec.foreground_dark, spec.work_size, whole_mask=spec.frame_size is None)


def brightness_factor(gray: np.ndarray, spec: Preprocess) -> float:
    """The gain that brings the median gray level to the target: undoes exposure and lamp drift."""
    if spec.photometric == "none":
        return 1.0
    level = brightness_level(gray)
    if level < BLACK_LEVEL:
        raise NotInspectable("image is black (median gray level 0): check the camera and lighting")
    return spec.photometric_target / level


def normalise_brightness(work: np.ndarray, spec: Preprocess) -> np.ndarray:
    """The image scaled so its median gray level meets the target."""
    factor = brightness_factor(gray_of(work), spec)
    return work if factor == 1.0 else np.clip(work * factor, 0.0, 1.0)


def _crop(work: np.ndarray, factor: float, part: Part | None, spec: Preprocess):
    """Model input (channels, h, w), work->input map, share of the input outside the frame, sharpness, and the
    part's share of what is segmented inside the input (1 when another blob there would be judged too)."""
    normalised = work if factor == 1.0 else np.clip(work * factor, 0.0, 1.0)
    matrix = pose_transform(spec, work.shape[:2], part)
    out_h, out_w = spec.input_size
    warped = cv2.warpAffine(normalised, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones(work.shape[:2], np.uint8), matrix, (out_w, out_h), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    sharpness = float(cv2.Laplacian(gray_of(warped), cv2.CV_32F).var())
    tensor = warped[None] if warped.ndim == 2 else np.ascontiguousarray(warped.transpose(2, 0, 1))
    share = None
    if part is not None:
        segmented, blob = (int(cv2.warpAffine(m, matrix, (out_w, out_h), flags=cv2.INTER_NEAREST).sum())
                           for m in (part.mask, part.blob))
        share = blob / segmented if segmented else 1.0
    return tensor, matrix, 1.0 - float(inside.mean()), sharpness, share


def foreground(work: np.ndarray, dark: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """Otsu segmentation of the part on a gray image: (threshold, uint8 mask 1 on the part, blurred 8-bit image)."""
    gray8 = cv2.GaussianBlur((work * 255.0).astype(np.uint8), (5, 5), 0)
    mode = cv2.THRESH_BINARY_INV if dark else cv2.THRESH_BINARY
    threshold, mask = cv2.threshold(gray8, 0, 1, mode + cv2.THRESH_OTSU)
    return threshold, mask, gray8


def separability(work: np.ndarray, threshold: float) -> float:
    """Otsu's measure of how well one threshold (8-bit, as ``foreground`` found it) splits the image in two:
    between-class over total variance, on the blurred image's own values. Counted on its 8-bit levels, an empty
    fixture under little sensor noise (a clean camera: noise of 1 to 3 gray levels) fell on two or three levels,
    which split almost perfectly (0.81 to 1.00 against a screw's 0.75 to 0.83): it read as a clear part, and was
    refused as out of focus rather than as empty. A part's value is the same either way (within 1e-4 on the
    screw's images), so the models' limits hold."""
    values = cv2.GaussianBlur(work.astype(np.float32) * 255.0, (5, 5), 0).ravel()
    low = values <= threshold + 0.5  # the 8-bit level the threshold names, and below
    w0 = float(np.count_nonzero(low)) / values.size
    variance = float(values.var(dtype=np.float64))
    if variance <= 0 or w0 <= 0 or w0 >= 1:
        return 0.0
    m0, m1 = float(values[low].mean(dtype=np.float64)), float(values[~low].mean(dtype=np.float64))
    return float(w0 * (1 - w0) * (m0 - m1) ** 2 / variance)


def find_part(gray: np.ndarray, dark: bool, work_size: int | None = None, whole_mask: bool = False) -> Part:
    """The part in a brightness-normalised gray working image, with the measures that say whether it is one.

    The pose is the largest blob's (``whole_mask``: of everything segmented, as schema 1 did).
    """
    threshold, mask, _ = foreground(gray, dark)
    if not mask.any():
        raise NotInspectable("no part found in the image: the frame looks empty")
    # blobs a few pixels apart count as one part, so a scratch across the part does not cut it in two
    reach = max(3, (work_size or max(gray.shape)) // 32 * 2 + 1)
    _, labels = cv2.connectedComponents(cv2.dilate(mask, np.ones((reach, reach), np.uint8)), connectivity=8)
    sizes = np.bincount(labels[mask > 0], minlength=2)
    largest = 1 + int(np.argmax(sizes[1:]))
    others = float(np.delete(sizes[1:], largest - 1).max(initial=0) / sizes[largest])
    blob = ((labels == largest) & (mask > 0)).astype(np.uint8)
    moments = cv2.moments(mask if whole_mask else blob, binaryImage=True)
    cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    angle = 0.5 * math.atan2(2.0 * moments["mu11"], moments["mu20"] - moments["mu02"])
    c, s = math.cos(angle), math.sin(angle)
    skew = (c**3 * moments["mu30"] + 3 * c * c * s * moments["mu21"]
            + 3 * c * s * s * moments["mu12"] + s**3 * moments["mu03"])
    if skew < 0:
        angle += math.pi
    edge = np.concatenate([blob[0], blob[-1], blob[1:-1, 0], blob[1:-1, -1]])
    unit = float(work_size or max(gray.shape)) ** 2
    return Part(cx, cy, angle, contrast=separability(gray, threshold), area=float(sizes[largest]) / unit,
                border=float(edge.mean()), others=others, mask=mask, blob=blob)


def part_axes(align: str, work_shape: tuple[int, ...], part: Part | None) -> tuple[float, float, float]:
    """Origin (x, y) and angle of the frame the crop is measured in: the part's centroid and, for
    ``center_rotate``, its principal axis; the working image's centre without a part."""
    if part is None or align == "none":
        return work_shape[1] / 2.0, work_shape[0] / 2.0, 0.0
    return part.cx, part.cy, (part.angle if align == "center_rotate" else 0.0)


def pose_transform(spec: Preprocess, work_shape: tuple[int, int], part: Part | None) -> np.ndarray:
    """The 2x3 map from working pixels to input pixels: centre and rotate the part if asked, crop, scale."""
    size = spec.work_size
    out_h, out_w = spec.input_size
    crop_w, crop_h = spec.crop[0] * size, spec.crop[1] * size
    cx, cy, angle = part_axes(spec.align, work_shape, part)
    c, s = math.cos(angle), math.sin(angle)
    du, dv = spec.crop_offset[0] * size, spec.crop_offset[1] * size
    cx, cy = cx + c * du - s * dv, cy + s * du + c * dv
    sx, sy = out_w / crop_w, out_h / crop_h
    # rotate by -angle about the crop centre, put that centre in the middle of the output, then scale
    return np.array(
        [[sx * c, sx * s, sx * (-c * cx - s * cy) + out_w / 2.0],
         [-sy * s, sy * c, sy * (s * cx - c * cy) + out_h / 2.0]],
        np.float64,
    )


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer ∘ inner for 2x3 affine maps."""
    full = np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]])
    return full[:2]
