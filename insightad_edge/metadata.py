"""The model contract: one JSON document inside the ONNX file that says how to feed and judge the model.

Training writes it, the edge reads it back with onnxruntime alone, so the two can never disagree.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import MetadataError

METADATA_KEY = "insightad"
SCHEMA_VERSION = 1

PHOTOMETRIC_METHODS = ("none", "median_scale")
ALIGN_METHODS = ("none", "center", "center_rotate")
INTERPOLATIONS = ("area", "linear")
SCORE_METHODS = ("blurred_map_max",)


@dataclass(frozen=True)
class Preprocess:
    """How a decoded gray image in [0, 1] becomes the model's input tensor.

    The image is first resized to ``work_size`` (square), then brightness-normalised, then
    (optionally) centred and rotated onto the part's principal axis and cropped to
    ``crop`` = (width, height) as fractions of ``work_size``, its centre ``crop_offset`` away from the
    part's centroid along and across the part's axis (same units), and finally resized to
    ``input_size`` = (height, width).
    """

    input_size: tuple[int, int] = (256, 256)
    channels: int = 1
    work_size: int = 512
    interpolation: str = "area"
    photometric: str = "median_scale"
    photometric_target: float = 0.75
    align: str = "none"
    crop: tuple[float, float] = (1.0, 1.0)
    crop_offset: tuple[float, float] = (0.0, 0.0)
    foreground_dark: bool = True


@dataclass(frozen=True)
class Score:
    """How the model's per-pixel anomaly map becomes one number per image.

    The graph itself outputs the map (squared reconstruction error, standardised per pixel when
    ``pixel_standardised``); the edge blurs it with ``blur_sigma``, zeroes ``border`` pixels and takes the max.
    """

    method: str = "blurred_map_max"
    blur_sigma: float = 4.0
    border: int = 0
    pixel_standardised: bool = False


@dataclass(frozen=True)
class Threshold:
    """The decision threshold on the score and how it was chosen."""

    value: float = 0.0
    method: str = "quantile"
    quantile: float | None = 0.99
    n_good: int = 0
    n_defect: int = 0


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the edge needs to run an exported model, and where it came from."""

    preprocess: Preprocess = field(default_factory=Preprocess)
    score: Score = field(default_factory=Score)
    threshold: Threshold = field(default_factory=Threshold)
    arch: str = "seed"
    category: str = ""
    data_fingerprint: str = ""
    created: str = ""
    package_version: str = ""
    input_name: str = "image"
    output_name: str = "anomaly_map"
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        """Parse and validate; raise MetadataError with the first problem found."""
        try:
            doc = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise MetadataError(f"model metadata is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise MetadataError("model metadata must be a JSON object")
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise MetadataError(
                f"model metadata schema {version!r} is not supported (this insightad reads schema "
                f"{SCHEMA_VERSION}); re-export the model with a matching insightad version"
            )
        try:
            meta = cls(
                preprocess=section_from_dict(Preprocess, doc.get("preprocess", {})),
                score=section_from_dict(Score, doc.get("score", {})),
                threshold=section_from_dict(Threshold, doc.get("threshold", {})),
                **{k: v for k, v in doc.items() if k not in ("preprocess", "score", "threshold")},
            )
        except TypeError as exc:
            raise MetadataError(f"model metadata has an unexpected field: {exc}") from None
        meta.validate()
        return meta

    def validate(self) -> None:
        """Refuse what the edge cannot honour."""
        p, s, t = self.preprocess, self.score, self.threshold
        problems = []
        if len(p.input_size) != 2 or any(int(v) < 16 for v in p.input_size):
            problems.append(f"input_size {p.input_size} must be two sizes of at least 16")
        if p.channels != 1:
            problems.append(f"channels {p.channels} is not supported (gray models only)")
        if p.work_size < 16:
            problems.append(f"work_size {p.work_size} is too small")
        if p.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation {p.interpolation!r} not in {INTERPOLATIONS}")
        if p.photometric not in PHOTOMETRIC_METHODS:
            problems.append(f"photometric {p.photometric!r} not in {PHOTOMETRIC_METHODS}")
        if not 0.0 < p.photometric_target <= 1.0:
            problems.append(f"photometric_target {p.photometric_target} must lie in (0, 1]")
        if p.align not in ALIGN_METHODS:
            problems.append(f"align {p.align!r} not in {ALIGN_METHODS}")
        if len(p.crop) != 2 or not all(0.0 < c <= 2.0 for c in p.crop):
            problems.append(f"crop {p.crop} must be two fractions in (0, 2]")
        if len(p.crop_offset) != 2 or not all(abs(c) <= 1.0 for c in p.crop_offset):
            problems.append(f"crop_offset {p.crop_offset} must be two fractions in [-1, 1]")
        if s.method not in SCORE_METHODS:
            problems.append(f"score method {s.method!r} not in {SCORE_METHODS}")
        if s.blur_sigma < 0 or s.border < 0:
            problems.append("score blur_sigma and border must not be negative")
        if not isinstance(t.value, (int, float)):
            problems.append(f"threshold {t.value!r} is not a number")
        if problems:
            raise MetadataError("model metadata is invalid: " + "; ".join(problems))


def section_from_dict(kind: type, values: Any):
    """One section (Preprocess, Score, Threshold) from its dict form; JSON lists become the tuples they were."""
    if not isinstance(values, dict):
        raise MetadataError(f"model metadata section for {kind.__name__} must be an object")
    tuples = {f.name for f in dataclasses.fields(kind) if str(f.type).startswith("tuple")}
    return kind(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in values.items()})
