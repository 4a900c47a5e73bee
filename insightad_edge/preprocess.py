"""Decode any supported image and turn it into the model's input, driven only by the model's metadata.

Training calls the same functions, so the edge sees exactly what the model was trained on.
Formats are told apart by dtype and channel count, never by pixel values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import ImageError
from .metadata import Preprocess

ImageSource = Union[str, PathLike, bytes, bytearray, memoryview, np.ndarray]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"})
MIN_SIDE = 8
_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


@dataclass(frozen=True)
class Prepared:
    """A model input (channels, height, width) and the 2x3 affine map from original pixels to it."""

    input: np.ndarray
    transform: np.ndarray
    image_shape: tuple[int, int]


def decode(source: ImageSource) -> np.ndarray:
    """Return a gray float32 image in [0, 1] from a path, encoded bytes or a decoded array.

    Arrays: uint8 and uint16 are scaled by their full range, floats are taken as already in
    [0, 1]; 2-D is gray, 3 channels are BGR, 4 are BGRA (alpha ignored), as OpenCV delivers them.
    """
    if isinstance(source, np.ndarray):
        return to_gray_float(source)
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
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ImageError(f"{name} is not a readable image (corrupt, truncated or an unsupported format)")
    return to_gray_float(array)


def to_gray_float(array: np.ndarray) -> np.ndarray:
    """Convert an OpenCV-style array (gray, BGR or BGRA; 8-bit, 16-bit or float) to gray float32."""
    if array.dtype == np.uint8:
        image = array.astype(np.float32) * (1.0 / 255.0)
    elif array.dtype == np.uint16:
        image = array.astype(np.float32) * (1.0 / 65535.0)
    elif array.dtype in (np.float32, np.float64):
        image = np.asarray(array, dtype=np.float32)
    else:
        raise ImageError(f"image dtype {array.dtype} is not supported (use uint8, uint16 or float in [0, 1])")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    elif image.ndim != 2:
        raise ImageError(f"image shape {array.shape} is not gray, BGR or BGRA")
    if min(image.shape) < MIN_SIDE:
        raise ImageError(f"image is {image.shape[1]}x{image.shape[0]} pixels, too small to inspect")
    return np.ascontiguousarray(image)


def to_work(image: np.ndarray, spec: Preprocess) -> np.ndarray:
    """Resize a gray image to the square working size; training caches this step."""
    size = spec.work_size
    shrinking = image.shape[0] > size or image.shape[1] > size
    flag = _INTERPOLATION[spec.interpolation] if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=flag)


def prepare(image: np.ndarray, spec: Preprocess) -> Prepared:
    """Full preprocessing of a decoded gray image: work size, brightness, pose, crop, input size."""
    height, width = image.shape
    work = to_work(image, spec)
    to_work_map = np.array([[spec.work_size / width, 0, 0], [0, spec.work_size / height, 0]], np.float64)
    tensor, work_to_input = prepare_work(work, spec)
    return Prepared(tensor, _compose(work_to_input, to_work_map), (height, width))


def prepare_work(work: np.ndarray, spec: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess an image already at working size; returns the input and the work->input map."""
    work = normalise_brightness(work, spec)
    matrix = pose_transform(work, spec)
    out_h, out_w = spec.input_size
    tensor = cv2.warpAffine(work, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return tensor[None, :, :], matrix


def normalise_brightness(work: np.ndarray, spec: Preprocess) -> np.ndarray:
    """Scale the image so its median gray level meets the target: undoes exposure and lamp drift."""
    if spec.photometric == "none":
        return work
    level = float(np.median(work[::4, ::4]))
    if level < 1.0 / 255.0:
        raise ImageError("image is black (median gray level 0): check the camera and lighting")
    return np.clip(work * (spec.photometric_target / level), 0.0, 1.0)


def foreground(work: np.ndarray, dark: bool) -> np.ndarray:
    """Otsu segmentation of the part: a uint8 mask, 1 on the part."""
    gray8 = cv2.GaussianBlur((work * 255.0).astype(np.uint8), (5, 5), 0)
    mode = cv2.THRESH_BINARY_INV if dark else cv2.THRESH_BINARY
    _, mask = cv2.threshold(gray8, 0, 1, mode + cv2.THRESH_OTSU)
    return mask


def part_pose(work: np.ndarray, dark: bool) -> tuple[float, float, float]:
    """Centroid (x, y) and principal-axis angle of the part, the heavier end pointing to -x."""
    moments = cv2.moments(foreground(work, dark), binaryImage=True)
    if moments["m00"] < 1.0:
        raise ImageError("no part found in the image: the frame looks empty")
    cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    angle = 0.5 * math.atan2(2.0 * moments["mu11"], moments["mu20"] - moments["mu02"])
    c, s = math.cos(angle), math.sin(angle)
    skew = (c**3 * moments["mu30"] + 3 * c * c * s * moments["mu21"]
            + 3 * c * s * s * moments["mu12"] + s**3 * moments["mu03"])
    if skew < 0:
        angle += math.pi
    return cx, cy, angle


def pose_transform(work: np.ndarray, spec: Preprocess) -> np.ndarray:
    """The 2x3 map from working pixels to input pixels: centre and rotate the part if asked, crop, scale."""
    size = spec.work_size
    out_h, out_w = spec.input_size
    crop_w, crop_h = spec.crop[0] * size, spec.crop[1] * size
    if spec.align == "none":
        cx = cy = size / 2.0
        angle = 0.0
    else:
        cx, cy, angle = part_pose(work, spec.foreground_dark)
        if spec.align == "center":
            angle = 0.0
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
