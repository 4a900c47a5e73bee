"""Detector: one loaded model, called on frames, paths or bytes, returning a small frozen Result.

Built once and never changed afterwards, so one instance can serve many threads; it pickles by its
model path and sha256, so a worker process rebuilds its own session cheaply, and never from a replaced file.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from . import inspectability, modelfile, preprocess, scoring
from .errors import MetadataError, ModelError, NotInspectable
from .metadata import METADATA_KEY, ModelMetadata

DEFAULT_MODEL_NAME = "screw.onnx"
MODEL_ENV = "INSIGHTAD_MODEL"
OK, DEFECT, NOT_INSPECTABLE, ERROR = "ok", "defect", "not_inspectable", "error"
STATUSES = (OK, DEFECT, NOT_INSPECTABLE, ERROR)
NOT_INSPECTABLE_MODES = ("raise", "report")
# onnxruntime's pool threads spin after each call, waiting for the next: a station judges a frame, then waits for
# the camera, and the spinning took 123% of a core at 30 frames/s against 29% (2 cores), from the decoding, the log
# and any other station on the PC, for at most 0.5 ms less latency; flat out it was no faster (benchmarks/edge_path.py)
SPIN_BETWEEN_CALLS = False


@dataclass(frozen=True)
class Result:
    """The verdict on one image. ``anomaly_map`` (original image pixels) only when asked for.

    ``status`` is ``ok``, ``defect`` or ``not_inspectable``; a not-inspectable frame has no score and no
    anomaly verdict (both None) and ``reason`` says why. ``stats`` are what the edge measured on the frame.
    """

    score: float | None
    threshold: float
    anomaly: bool | None
    status: str = OK
    reason: str | None = None
    anomaly_map: np.ndarray | None = field(default=None, repr=False, compare=False)
    timings_ms: Mapping[str, float] = field(default_factory=dict, compare=False)
    stats: preprocess.FrameStats | None = field(default=None, compare=False)


def default_model_path() -> Path:
    """The model used when none is given: $INSIGHTAD_MODEL, else the shipped one.

    The shipped model travels inside the wheel (``insightad_edge/exported``); in a source checkout
    it is read from the repository's ``exported/`` folder.
    """
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    packaged = Path(str(resources.files(__package__) / "exported" / DEFAULT_MODEL_NAME))
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "exported" / DEFAULT_MODEL_NAME


def load_session(data: bytes, path: Path, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session on the model's bytes, with a clear error when they are not a usable ONNX model."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if SPIN_BETWEEN_CALLS else "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        newer = any(word in str(exc).lower() for word in ("ir version", "opset"))  # stamped for a later onnxruntime
        hint = f" (onnxruntime {ort.__version__} here: upgrade it, pip install -U onnxruntime)" if newer else ""
        raise ModelError(f"{path} is not a usable ONNX model{hint}: {exc}") from None


def read_metadata(props: Mapping[str, str], path: Path) -> ModelMetadata:
    """The model's contract, from its ONNX metadata, validated."""
    if METADATA_KEY not in props:
        raise MetadataError(f"{path} has no insightad metadata: export it with `insightad-train export`")
    return ModelMetadata.from_json(props[METADATA_KEY])


class Detector:
    """Scores images with one exported model.

    >>> detector = Detector()                 # the shipped model
    >>> result = detector("part.png")         # or encoded bytes, or a cv2 frame
    >>> result.anomaly, result.score
    """

    __slots__ = ("_session", "metadata", "path", "sealed", "sha256", "threads", "threshold")

    def __init__(self, model: str | os.PathLike | None = None, *, threshold: float | None = None,
                 threads: int | None = None):
        path = Path(model) if model is not None else default_model_path()
        data = modelfile.read(path)  # read once: the seal, the session and the sha256 see the same bytes
        session = load_session(data, path, threads)
        props = session.get_modelmeta().custom_metadata_map
        sealed = modelfile.is_sealed(data, props.get(modelfile.SEAL_KEY), path)
        metadata = read_metadata(props, path)
        check_graph(session, metadata, path)
        threshold = float(metadata.threshold.value if threshold is None else threshold)
        if not math.isfinite(threshold):  # nothing scores above NaN: every part would pass
            raise ValueError(f"threshold {threshold} is not a finite number")
        for name, value in (("path", path), ("metadata", metadata), ("threads", threads), ("_session", session),
                            ("threshold", threshold), ("sealed", sealed), ("sha256", hashlib.sha256(data).hexdigest())):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("a Detector is immutable; build a new one")

    def __reduce__(self):
        return (_rebuild, (str(self.path), self.threshold, self.threads, self.sha256))

    def __repr__(self) -> str:
        return f"Detector({str(self.path)!r}, threshold={self.threshold:.6g})"

    @property
    def warnings(self) -> list[str]:
        """What a person should know before trusting this model's verdicts: its metadata's, and a missing seal."""
        unsealed = ["no seal (exported before insightad sealed its models, or rewritten by another tool): a damaged "
                    "copy of this file cannot be told from a whole one; export it again to seal it"]
        return self.metadata.warnings + ([] if self.sealed else unsealed)

    def __call__(self, image: preprocess.ImageSource, *, with_map: bool = False,
                 not_inspectable: str = "raise") -> Result:
        """Judge one image: a path, encoded bytes, or a decoded array (gray/BGR/BGRA, 8/16-bit).

        A frame the model cannot judge raises ``NotInspectable`` (an ``ImageError``) with the reason;
        with ``not_inspectable="report"`` it comes back as a Result with status ``not_inspectable``.
        """
        return self.batch([image], with_map=with_map, not_inspectable=not_inspectable)[0]

    def batch(self, images: Sequence[preprocess.ImageSource], *, with_map: bool = False,
              not_inspectable: str = "raise") -> list[Result]:
        """Judge several images in one model call; raises on the first image that cannot be decoded."""
        return run_pipeline(images, self.metadata, self.threshold, self.infer, with_map=with_map,
                            not_inspectable=not_inspectable)

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """The model's anomaly maps (batch, 1, h, w) for preprocessed inputs (batch, channels, h, w)."""
        feed = {self.metadata.input_name: np.ascontiguousarray(inputs, np.float32)}
        return self._session.run([self.metadata.output_name], feed)[0]


def check_graph(session: ort.InferenceSession, metadata: ModelMetadata, path: Path) -> None:
    """The graph must take exactly the input the metadata describes and answer a plain input with one finite map."""
    inputs = session.get_inputs()
    expected = (metadata.preprocess.channels, *metadata.preprocess.input_size)
    if len(inputs) != 1 or inputs[0].name != metadata.input_name:
        raise MetadataError(f"{path}: the graph's inputs {[i.name for i in inputs]} are not the one input "
                            f"{metadata.input_name!r} its metadata names")
    if tuple(inputs[0].shape[1:]) != expected:
        raise MetadataError(f"{path}: graph input {inputs[0].shape} does not match metadata {expected}")
    if metadata.output_name not in {o.name for o in session.get_outputs()}:
        raise MetadataError(f"{path}: the graph has no output {metadata.output_name!r}")
    plain = np.full((1, *expected), 0.5, np.float32)  # a mid-gray input: every sound model maps it to finite numbers
    output = session.run([metadata.output_name], {metadata.input_name: plain})[0]
    if output.ndim != 4 or output.shape[:2] != (1, 1):
        raise MetadataError(f"{path}: the graph's output {output.shape} is not one anomaly map per image")
    if not np.isfinite(output).all():
        raise ModelError(f"{path} is damaged: its anomaly map of a plain gray input holds NaN or infinity "
                         "(export the model again from its training run)")


def prepare_checked(image: np.ndarray, metadata: ModelMetadata) -> preprocess.Prepared:
    """Preprocess one decoded frame and refuse it (NotInspectable) when the model cannot judge it."""
    prepared = preprocess.prepare(image, metadata.preprocess, metadata.inspection)
    if metadata.inspection is not None:
        reasons = inspectability.problems(prepared.stats, metadata)
        if metadata.preprocess.channels == 3 and preprocess.lacks_colour(image):
            reasons.append("the model judges colour and this frame has none (a gray image, or a camera in mono "
                           "mode): a defect of colour alone would pass unseen")
        if reasons:
            raise NotInspectable("; ".join(reasons), prepared.stats)
    return prepared


def run_pipeline(images: Sequence[preprocess.ImageSource], metadata: ModelMetadata, threshold: float,
                 infer: Callable[[np.ndarray], np.ndarray], *, with_map: bool = False,
                 not_inspectable: str = "raise") -> list[Result]:
    """decode -> preprocess + inspectability -> reconstruct -> score, timed; ``infer`` is the model (ONNX
    here, torch in training). Frames that cannot be judged raise, or become not-inspectable Results."""
    if not_inspectable not in NOT_INSPECTABLE_MODES:
        raise ValueError(f"not_inspectable={not_inspectable!r} must be one of {NOT_INSPECTABLE_MODES}")
    t0 = time.perf_counter()
    frames = [preprocess.load(image) for image in images]
    decoded = [preprocess.to_float(frame, metadata.preprocess.channels) for frame in frames]
    t1 = time.perf_counter()
    prepared: list[preprocess.Prepared | NotInspectable] = []
    for frame, image in zip(frames, decoded):
        try:
            prepared.append(prepare_checked(image, metadata))
        except NotInspectable as exc:
            if hint := inspectability.narrow_depth(frame, exc.stats, metadata):
                exc = NotInspectable(f"{exc.reason}; {hint}", exc.stats)
            if not_inspectable == "raise":
                raise exc from None
            prepared.append(exc)
    judged = [p for p in prepared if isinstance(p, preprocess.Prepared)]
    t2 = time.perf_counter()
    raw_maps = infer(np.stack([p.input for p in judged])) if judged else None
    if judged and not np.isfinite(raw_maps).all():  # NaN > threshold is False: a broken model would pass every part
        raise ModelError("the model's anomaly map of this frame holds NaN or infinity: its weights or its arithmetic "
                         "are broken, so there is no verdict")
    t3 = time.perf_counter()
    maps = scoring.smooth_maps(raw_maps, metadata.score) if judged else []
    scores = iter(scoring.image_scores(maps, metadata.score) if judged else [])
    maps = iter(maps)
    t4 = time.perf_counter()
    per_image = 1000.0 / len(images)
    timings = {"decode": (t1 - t0) * per_image, "preprocess": (t2 - t1) * per_image,
               "reconstruct": (t3 - t2) * per_image, "score": (t4 - t3) * per_image}
    results = []
    for p in prepared:
        if isinstance(p, NotInspectable):
            results.append(Result(score=None, threshold=threshold, anomaly=None, status=NOT_INSPECTABLE,
                                  reason=str(p), stats=p.stats, timings_ms=timings))
            continue
        score, amap = float(next(scores)), next(maps)
        results.append(Result(score=score, threshold=threshold, anomaly=score > threshold,
                              status=DEFECT if score > threshold else OK, stats=p.stats, timings_ms=timings,
                              anomaly_map=scoring.map_to_image(amap, p.transform, p.image_shape) if with_map else None))
    return results


def _rebuild(path: str, threshold: float, threads: int | None, sha256: str | None = None) -> Detector:
    """The pickled Detector again, from its path; refused when another model has been put there since (a pickle
    made by insightad 0.2 carries no sha256 to compare)."""
    detector = Detector(path, threshold=threshold, threads=threads)
    if sha256 is not None and detector.sha256 != sha256:
        raise ModelError(f"{path} is not the model this Detector was loaded from (sha256 {sha256[:12]} then, "
                         f"{detector.sha256[:12]} now): the file was replaced; load the new one deliberately")
    return detector
