"""The model contract: one JSON document inside the ONNX file that says how to feed and judge the model.

Training writes it, the edge reads it back with onnxruntime alone, so the two can never disagree.
Schema 2 (written now) adds the training frames' size (frames of any shape keep the trained geometry),
colour, the limits of what the model can judge (``inspection``) and the good images' distributions a
drift monitor compares with (``calibration``). Schema 1 files are still read and score exactly as before.
Every field is required and type-checked: a model file that is not exactly right is refused.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import MetadataError

METADATA_KEY = "insightad"
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)

PHOTOMETRIC_METHODS = ("none", "median_scale")
ALIGN_METHODS = ("none", "center", "center_rotate")
INTERPOLATIONS = ("area", "linear")
SCORE_METHODS = ("blurred_map_max",)  # each implemented in scoring.SCORE_METHODS (a test holds them equal)
THRESHOLD_METHODS = ("quantile", "youden")
CHANNELS = (1, 3)
CROP_MAX = 64.0         # a crop side may reach this many working sizes (a line-scan camera's long strip)
MIN_INPUT_SIDE = 16
MAX_REFERENCE_SAMPLES = 256
FRAME_STATS = ("brightness", "saturated", "contrast", "part_share", "part_area", "border", "part_x", "part_y",
               "outside", "sharpness", "others")


@dataclass(frozen=True)
class Preprocess:
    """How a decoded image in [0, 1] becomes the model's input tensor.

    Schema 2: the frame is resized, keeping its aspect, so that ``frame_size`` (the training frames'
    (height, width) in pixels) would have its short side at ``work_size``; brightness is normalised;
    the part is (optionally) centred and turned onto its principal axis; the input is the crop
    ``crop`` = (width, height) in working sizes, its centre ``crop_offset`` from the part's centroid
    along and across the axis (same units; from the working image's centre when nothing is aligned), resized
    to ``input_size`` = (height, width).
    Schema 1 (``frame_size`` None): the frame is squashed to a ``work_size`` square first.
    ``channels`` 1 is gray, 3 is colour in OpenCV's BGR order.
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
    frame_size: Optional[tuple[int, int]] = None


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
    quantile: Optional[float] = 0.99
    n_good: int = 0
    n_defect: int = 0


@dataclass(frozen=True)
class Inspection:
    """What the model can judge, measured on its good training images with a margin.

    A frame outside these limits is not inspectable: its verdict would be a guess. ``None`` means
    "not checked" (a texture has no part to measure). Ranges are (low, high).
    """

    brightness: tuple[float, float] = (0.0, 1.0)
    saturated_max: float = 1.0
    contrast_min: Optional[float] = None
    part_share_min: Optional[float] = None
    part_area: Optional[tuple[float, float]] = None
    border_max: Optional[float] = None
    outside_max: float = 1.0


@dataclass(frozen=True)
class Calibration:
    """The good images' distributions a drift monitor compares live frames with.

    ``score`` holds the held-back good images' scores, ``stats`` each frame statistic of the good
    training images (see ``FRAME_STATS``), each sorted, at most ``MAX_REFERENCE_SAMPLES`` values.
    """

    score: tuple[float, ...] = ()
    stats: dict = field(default_factory=dict)

    @classmethod
    def measured(cls, scores, stats) -> Calibration:
        """From the held-back good images' scores and the good images' FrameStats (None values skipped)."""
        columns = {name: [getattr(s, name) for s in stats if getattr(s, name) is not None] for name in FRAME_STATS}
        return cls(score=reference_sample(scores),
                   stats={name: reference_sample(values) for name, values in columns.items() if values})


def reference_sample(values) -> tuple[float, ...]:
    """Sorted values, thinned to at most MAX_REFERENCE_SAMPLES evenly spaced quantiles."""
    ordered = sorted(float(v) for v in values)
    if len(ordered) <= MAX_REFERENCE_SAMPLES:
        return tuple(ordered)
    step = (len(ordered) - 1) / (MAX_REFERENCE_SAMPLES - 1)
    return tuple(ordered[round(i * step)] for i in range(MAX_REFERENCE_SAMPLES))


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
    inspection: Optional[Inspection] = None
    calibration: Optional[Calibration] = None

    def to_json(self) -> str:
        doc = dataclasses.asdict(self)
        if self.schema_version == 1:
            for key in V2_ONLY_TOP:
                doc.pop(key)
            doc["preprocess"].pop("frame_size")
        return json.dumps(doc, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse and validate; raise MetadataError naming the field and what is wrong with it."""
        try:
            doc = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise MetadataError(f"model metadata is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise MetadataError("model metadata must be a JSON object")
        version = doc.get("schema_version")
        if type(version) is not int or version not in READABLE_SCHEMAS:
            raise MetadataError(
                f"model metadata schema {version!r} is not supported (this insightad reads schemas "
                f"{', '.join(map(str, READABLE_SCHEMAS))}); re-export the model with a matching insightad version")
        return parse(doc, version)

    @property
    def warnings(self) -> list[str]:
        """What a person should know before trusting this model's verdicts."""
        found = []
        if self.threshold.method == "quantile" and self.threshold.n_good < MIN_CALIBRATION_IMAGES:
            found.append(f"threshold calibrated on only {self.threshold.n_good} held-back good images "
                         f"(fewer than {MIN_CALIBRATION_IMAGES}): its false-reject rate is a rough guess")
        ratio = None if self.calibration is None else lone_top(self.calibration.score, self.threshold)
        if ratio is not None:
            found.append(f"the threshold rests on one held-back good image alone, which scores {ratio:.1f} times "
                         "the next highest: a defective part filed as good would set it so (fit named the image)")
        if self.schema_version < SCHEMA_VERSION:
            found.append(f"schema {self.schema_version} model: no inspectability check and no drift reference; "
                         "re-export it to get both")
        elif "part_area" in self.calibration.stats and "others" not in self.calibration.stats:
            found.append("made before insightad looked beside the part: a second part in view goes unnoticed, and "
                         "unjudged; `insightad-train upgrade MODEL --data DATA --out NEW` adds what it needs")
        return found


MIN_CALIBRATION_IMAGES = 30
LONE_TOP = 1.5  # a held-back score this many times the next highest sets a quantile threshold alone
V2_ONLY_TOP = ("inspection", "calibration")


def lone_top(scores, threshold: Threshold) -> float | None:
    """The largest held-back score over the next highest when a quantile threshold rests on it alone (a high
    quantile of a few dozen scores is their largest), else None: a defective part filed as good sets it so."""
    if threshold.method != "quantile" or len(scores) < 2:
        return None
    second, top = sorted(scores)[-2:]
    if second <= 0 or top <= LONE_TOP * second or threshold.value <= second:
        return None
    return top / second


# --- strict reading -----------------------------------------------------------------------------

def _fail(where: str, reason: str):
    raise MetadataError(f"model metadata field {where} {reason}")


def number(lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False) -> Callable[[Any, str], float]:
    def check(value, where):
        if type(value) not in (int, float):
            _fail(where, f"must be a number, not {json.dumps(value)}")
        if not math.isfinite(value):
            _fail(where, f"must be finite, not {value}")
        if value < lo or value > hi or (lo_open and value == lo):
            _fail(where, f"= {value} must lie in {'(' if lo_open else '['}{lo}, {hi}]")
        return float(value)
    return check


def integer(lo: int, hi: float = math.inf) -> Callable[[Any, str], int]:
    def check(value, where):
        if type(value) is not int:
            _fail(where, f"must be an integer, not {json.dumps(value)}")
        if not lo <= value <= hi:
            _fail(where, f"= {value} must lie in [{lo}, {hi}]")
        return value
    return check


def choice(options: tuple) -> Callable[[Any, str], Any]:
    def check(value, where):
        if type(value) not in (str, int) or value not in options:
            _fail(where, f"= {json.dumps(value)} must be one of {', '.join(map(str, options))}")
        return value
    return check


def text(value, where) -> str:
    if type(value) is not str:
        _fail(where, f"must be a string, not {json.dumps(value)}")
    return value


def boolean(value, where) -> bool:
    if type(value) is not bool:
        _fail(where, f"must be true or false, not {json.dumps(value)}")
    return value


def pair(item: Callable[[Any, str], Any]) -> Callable[[Any, str], tuple]:
    def check(value, where):
        if not isinstance(value, list) or len(value) != 2:
            _fail(where, f"must be a list of two, not {json.dumps(value)}")
        return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))
    return check


def ordered_pair(item):
    def check(value, where):
        low, high = pair(item)(value, where)
        if low > high:
            _fail(where, f"= {list(value)} must be (low, high)")
        return low, high
    return check


def samples(value, where) -> tuple[float, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_REFERENCE_SAMPLES:
        _fail(where, f"must be a list of 1 to {MAX_REFERENCE_SAMPLES} numbers")
    values = tuple(number()(v, f"{where}[{i}]") for i, v in enumerate(value))
    if list(values) != sorted(values):
        _fail(where, "must be sorted")
    return values


def optional(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, where: None if value is None else check(value, where)


FRACTION = number(0.0, 1.0)
PREPROCESS_FIELDS = {
    "input_size": pair(integer(MIN_INPUT_SIDE, 8192)),
    "channels": choice(CHANNELS),
    "work_size": integer(MIN_INPUT_SIDE, 16384),
    "interpolation": choice(INTERPOLATIONS),
    "photometric": choice(PHOTOMETRIC_METHODS),
    "photometric_target": number(0.0, 1.0, lo_open=True),
    "align": choice(ALIGN_METHODS),
    "crop": pair(number(0.0, CROP_MAX, lo_open=True)),
    "crop_offset": pair(number(-CROP_MAX / 2, CROP_MAX / 2)),  # an unaligned crop at one end of a long frame
    "foreground_dark": boolean,
    "frame_size": pair(integer(MIN_INPUT_SIDE, 65536)),
}
SCORE_FIELDS = {
    "method": choice(SCORE_METHODS),
    "blur_sigma": number(0.0, 64.0),
    "border": integer(0, 1024),
    "pixel_standardised": boolean,
}
THRESHOLD_FIELDS = {
    "value": number(),
    "method": choice(THRESHOLD_METHODS),
    "quantile": optional(number(0.0, 1.0)),
    "n_good": integer(0),
    "n_defect": integer(0),
}
INSPECTION_FIELDS = {
    "brightness": ordered_pair(FRACTION),
    "saturated_max": FRACTION,
    "contrast_min": optional(FRACTION),
    "part_share_min": optional(FRACTION),
    "part_area": optional(ordered_pair(number(0.0, CROP_MAX * CROP_MAX))),
    "border_max": optional(FRACTION),
    "outside_max": FRACTION,
}
TOP_FIELDS = {
    "arch": text, "category": text, "data_fingerprint": text, "created": text, "package_version": text,
    "input_name": text, "output_name": text, "schema_version": integer(1, SCHEMA_VERSION),
}


def read_section(doc: Any, where: str, fields: dict, skip: tuple = ()) -> dict:
    """The checked values of one JSON object: every field present, none unknown, each of the right type."""
    if not isinstance(doc, dict):
        _fail(where, "must be an object")
    expected = {k: v for k, v in fields.items() if k not in skip}
    missing = sorted(set(expected) - set(doc))
    if missing:
        _fail(f"{where}.{missing[0]}" if where else missing[0], "is missing")
    unknown = sorted(set(doc) - set(expected))
    if unknown:
        _fail(f"{where}.{unknown[0]}" if where else unknown[0], "is not part of the schema")
    return {k: check(doc[k], f"{where}.{k}" if where else k) for k, check in expected.items()}


def read_calibration(doc: Any) -> Calibration:
    values = read_section(doc, "calibration", {"score": samples, "stats": lambda v, w: v})
    stats = values["stats"]
    if not isinstance(stats, dict):
        _fail("calibration.stats", "must be an object")
    unknown = sorted(set(stats) - set(FRAME_STATS))
    if unknown:
        _fail(f"calibration.stats.{unknown[0]}", f"is not a frame statistic ({', '.join(FRAME_STATS)})")
    return Calibration(score=values["score"], stats={k: samples(v, f"calibration.stats.{k}") for k, v in stats.items()})


def parse(doc: dict, version: int) -> ModelMetadata:
    """A checked ModelMetadata from a JSON object of the given schema version."""
    v1 = version == 1
    top = read_section({k: v for k, v in doc.items() if k not in ("preprocess", "score", "threshold", *V2_ONLY_TOP)},
                       "", TOP_FIELDS)
    for section in ("preprocess", "score", "threshold") + (() if v1 else V2_ONLY_TOP):
        if section not in doc:
            _fail(section, "is missing")
    if v1 and any(key in doc for key in V2_ONLY_TOP):
        _fail(next(k for k in V2_ONLY_TOP if k in doc), "is not part of schema 1")
    preprocess = Preprocess(**read_section(doc["preprocess"], "preprocess", PREPROCESS_FIELDS,
                                           skip=("frame_size",) if v1 else ()))
    threshold = Threshold(**read_section(doc["threshold"], "threshold", THRESHOLD_FIELDS))
    if threshold.method == "quantile" and threshold.quantile is None:
        _fail("threshold.quantile", "must be set for a quantile threshold")
    if preprocess.channels == 3 and v1:
        _fail("preprocess.channels", "= 3 needs schema 2")
    return ModelMetadata(
        preprocess=preprocess,
        score=Score(**read_section(doc["score"], "score", SCORE_FIELDS)),
        threshold=threshold,
        inspection=None if v1 else Inspection(**read_section(doc["inspection"], "inspection", INSPECTION_FIELDS)),
        calibration=None if v1 else read_calibration(doc["calibration"]),
        **top,
    )


def section_from_dict(kind: type, values: Any):
    """One section (Preprocess, Score, Threshold, Inspection) from its dict form, checked like a model's."""
    fields = {Preprocess: PREPROCESS_FIELDS, Score: SCORE_FIELDS, Threshold: THRESHOLD_FIELDS,
              Inspection: INSPECTION_FIELDS}[kind]
    values = json.loads(json.dumps(values))  # tuples become the lists a JSON document holds
    if kind is Preprocess and values.get("frame_size") is None:
        values.pop("frame_size", None)
        return kind(**read_section(values, kind.__name__.lower(), fields, skip=("frame_size",)))
    return kind(**read_section(values, kind.__name__.lower(), fields))
