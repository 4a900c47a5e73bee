"""Detector: one loaded model, called on frames, paths or bytes, returning a small frozen Result.

Built once and never changed afterwards, so one instance can serve many threads; it pickles by its
model path, so a worker process rebuilds its own session cheaply.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from . import preprocess, scoring
from .errors import MetadataError, ModelError
from .metadata import METADATA_KEY, ModelMetadata

DEFAULT_MODEL_NAME = "screw.onnx"
MODEL_ENV = "INSIGHTAD_MODEL"
_LFS_MAGIC = b"version https://git-lfs"


@dataclass(frozen=True)
class Result:
    """The verdict on one image. ``anomaly_map`` (original image pixels) only when asked for."""

    score: float
    threshold: float
    anomaly: bool
    anomaly_map: np.ndarray | None = field(default=None, repr=False, compare=False)
    timings_ms: Mapping[str, float] = field(default_factory=dict, compare=False)


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


def load_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """Open an ONNX model with clear errors for the usual ways a model file goes wrong."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    with path.open("rb") as handle:
        head = handle.read(len(_LFS_MAGIC))
    if head == _LFS_MAGIC:
        raise ModelError(f"{path} is a Git LFS pointer, not a model: run `git lfs pull`")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(f"{path} is not a usable ONNX model: {exc}") from None


def read_metadata(session: ort.InferenceSession, path: Path) -> ModelMetadata:
    """The model's contract, from its ONNX metadata, validated."""
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise MetadataError(f"{path} has no insightad metadata: export it with `insightad-train export`")
    return ModelMetadata.from_json(props[METADATA_KEY])


class Detector:
    """Scores images with one exported model.

    >>> detector = Detector()                 # the shipped model
    >>> result = detector("part.png")         # or encoded bytes, or a cv2 frame
    >>> result.anomaly, result.score
    """

    __slots__ = ("path", "metadata", "threshold", "threads", "_session", "_input_name")

    def __init__(self, model: str | os.PathLike | None = None, *, threshold: float | None = None,
                 threads: int | None = None):
        path = Path(model) if model is not None else default_model_path()
        session = load_session(path, threads)
        metadata = read_metadata(session, path)
        inputs = session.get_inputs()
        expected = (metadata.preprocess.channels, *metadata.preprocess.input_size)
        if len(inputs) != 1 or tuple(inputs[0].shape[1:]) != expected:
            raise MetadataError(f"{path}: graph input {inputs[0].shape} does not match metadata {expected}")
        if metadata.output_name not in {o.name for o in session.get_outputs()}:
            raise MetadataError(f"{path}: the graph has no output {metadata.output_name!r}")
        for name, value in (("path", path), ("metadata", metadata), ("threads", threads), ("_session", session),
                            ("threshold", float(metadata.threshold.value if threshold is None else threshold)),
                            ("_input_name", inputs[0].name)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("a Detector is immutable; build a new one")

    def __reduce__(self):
        return (_rebuild, (str(self.path), self.threshold, self.threads))

    def __repr__(self) -> str:
        return f"Detector({str(self.path)!r}, threshold={self.threshold:.6g})"

    def __call__(self, image: preprocess.ImageSource, *, with_map: bool = False) -> Result:
        """Score one image: a path, encoded bytes, or a decoded array (gray/BGR/BGRA, 8/16-bit)."""
        return self.batch([image], with_map=with_map)[0]

    def batch(self, images: Sequence[preprocess.ImageSource], *, with_map: bool = False) -> list[Result]:
        """Score several images in one model call; raises on the first image that cannot be decoded."""
        return run_pipeline(images, self.metadata, self.threshold, self.infer, with_map=with_map)

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """The model's anomaly maps (batch, 1, h, w) for preprocessed inputs (batch, channels, h, w)."""
        feed = {self._input_name: np.ascontiguousarray(inputs, np.float32)}
        return self._session.run([self.metadata.output_name], feed)[0]


def run_pipeline(images: Sequence[preprocess.ImageSource], metadata: ModelMetadata, threshold: float,
                 infer: Callable[[np.ndarray], np.ndarray], *, with_map: bool = False) -> list[Result]:
    """decode -> preprocess -> reconstruct -> score, timed; ``infer`` is the model (ONNX here, torch in training)."""
    t0 = time.perf_counter()
    decoded = [preprocess.decode(image) for image in images]
    t1 = time.perf_counter()
    prepared = [preprocess.prepare(image, metadata.preprocess) for image in decoded]
    inputs = np.stack([p.input for p in prepared])
    t2 = time.perf_counter()
    raw_maps = infer(inputs)
    t3 = time.perf_counter()
    maps = scoring.smooth_maps(raw_maps, metadata.score)
    scores = scoring.image_scores(maps, metadata.score)
    t4 = time.perf_counter()
    per_image = 1000.0 / len(images)
    timings = {"decode": (t1 - t0) * per_image, "preprocess": (t2 - t1) * per_image,
               "reconstruct": (t3 - t2) * per_image, "score": (t4 - t3) * per_image}
    return [
        Result(score=float(score), threshold=threshold, anomaly=bool(score > threshold),
               anomaly_map=scoring.map_to_image(amap, p.transform, p.image_shape) if with_map else None,
               timings_ms=timings)
        for score, amap, p in zip(scores, maps, prepared)
    ]


def _rebuild(path: str, threshold: float, threads: int | None) -> Detector:
    return Detector(path, threshold=threshold, threads=threads)
