"""Export a trained run to one self-describing ONNX file and prove the edge computes the same scores."""
from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from insightad_edge import modelfile
from insightad_edge.detector import Detector
from insightad_edge.errors import ModelError
from insightad_edge.metadata import METADATA_KEY, ModelMetadata

from .calibrate import score_paths
from .fit import TorchInfer, load_run

PARITY_TOLERANCE = 1e-4  # of the threshold (at least 1e-4 absolute): far below anything that could flip a verdict
OPSET = 17


@dataclasses.dataclass(frozen=True)
class ExportReport:
    path: Path
    size_bytes: int
    seconds: float
    max_score_difference: float
    parity_images: int

    def summary(self) -> str:
        return (f"exported {self.path} ({self.size_bytes / 1e6:.2f} MB) in {self.seconds:.1f} s; "
                f"edge vs torch score difference {self.max_score_difference:.2e} on {self.parity_images} images "
                f"(tolerance {PARITY_TOLERANCE:g} of the threshold)")


def write_onnx(mapper: torch.nn.Module, metadata: ModelMetadata, out: Path) -> None:
    """ONNX with a dynamic batch axis, outputs (anomaly map, reconstruction), and the contract in ``metadata_props``."""
    height, width = metadata.preprocess.input_size
    example = torch.zeros(1, metadata.preprocess.channels, height, width)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [metadata.input_name, metadata.output_name, "reconstruction"]
    # The TorchScript exporter: exact here (parity ~1e-6) and needs no onnxscript; torch>=2.9 marks it
    # deprecated, and it notes that it cannot fold stepped Slice nodes (the seed design's): neither is news
    # to a user running `insightad-train export`, so both are muted.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)  # about Slice steps
        torch.onnx.export(mapper.eval(), (example,), str(out), input_names=names[:1], output_names=names[1:],
                          opset_version=OPSET, dynamo=False, dynamic_axes={name: {0: "batch"} for name in names})
    graph = onnx.load(str(out))
    graph.producer_name = "insightad"
    save_sealed(graph, metadata, out)


def save_sealed(graph: onnx.ModelProto, metadata: ModelMetadata, out: Path) -> None:
    """Write GRAPH to OUT with METADATA as its contract, sealed so the edge refuses any copy that differs."""
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, {METADATA_KEY: metadata.to_json(), modelfile.SEAL_KEY: modelfile.BLANK_SEAL})
    partial = out.with_name(out.name + ".partial")  # a station starting meanwhile finds the old file or the new
    partial.write_bytes(modelfile.seal(graph.SerializeToString()))
    os.replace(partial, out)


def export(run: Path, out: Path, parity_paths: list[Path] | None = None) -> ExportReport:
    """Export RUN to OUT, then score held-back images with both torch and onnxruntime and compare.

    OUT only ever holds a whole, checked model: the new file takes its place once its scores agree.
    """
    began = time.monotonic()
    model, metadata = load_run(run)
    if parity_paths is None:
        parity_paths = _holdout(run)[:8]
    if not parity_paths:
        raise ValueError("no images for the parity check: pass some with --parity-images")
    partial = out.with_name(out.name + ".partial")
    try:
        write_onnx(model, metadata, partial)
        edge = Detector(partial)
        torch_scores = score_paths(parity_paths, metadata, TorchInfer(model))
        edge_scores = score_paths(parity_paths, edge.metadata, edge.infer)
        difference = float(np.max(np.abs(torch_scores - edge_scores)))
        tolerance = PARITY_TOLERANCE * max(1.0, abs(metadata.threshold.value))
        if not difference <= tolerance:
            raise ModelError(f"exported model disagrees with torch by {difference:.3g} > {tolerance:.3g}; "
                             f"{out} not written")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return ExportReport(out, out.stat().st_size, time.monotonic() - began, difference, len(parity_paths))


def _holdout(run: Path) -> list[Path]:
    listing = run / "holdout.json"
    return [Path(p) for p in json.loads(listing.read_text()) if Path(p).is_file()] if listing.is_file() else []


def upgrade(model: Path, data: Path, out: Path, holdout_fraction: float, seed: int) -> str:
    """A schema-2 copy of a schema-1 model: the same graph and threshold, measured on the data it was trained on;
    or of a schema-2 model, with the frame statistics it lacks (``add_statistics``).

    Only square training frames can be upgraded: schema 1 squashed every frame to a square, which schema 2 does
    exactly for square frames, so the scores stay the same (checked on the held-back images).
    """
    from .calibrate import measure
    from .data import load_dataset
    from .fit import split_holdout

    old = Detector(model)
    dataset = load_dataset(data)
    if old.metadata.schema_version == 2:
        return add_statistics(model, old.metadata, dataset.train, out)
    sizes = {decode_size(p) for p in dataset.train}
    if len(sizes) != 1 or len(set(next(iter(sizes)))) != 1:
        raise ValueError(f"the training frames are not all one square size ({sorted(sizes)[:3]}): a schema-1 model "
                         "trained on them saw squashed frames; train a new model instead")
    _, holdout = split_holdout(dataset.train, holdout_fraction, seed)
    spec = dataclasses.replace(old.metadata.preprocess, frame_size=next(iter(sizes)))
    upgraded = measure(dataclasses.replace(old.metadata, preprocess=spec), old.infer, dataset.train, holdout,
                       dataset.validation, old.metadata.threshold.quantile or 0.99)
    upgraded = dataclasses.replace(upgraded, threshold=old.metadata.threshold)
    before, after = score_paths(holdout, old.metadata, old.infer), score_paths(holdout, upgraded, old.infer)
    if not np.array_equal(before, after):
        raise ModelError(f"schema 2 would score the held-back images differently (by up to "
                         f"{np.max(np.abs(before - after)):.3g}); not written")
    save_sealed(onnx.load(str(model)), upgraded, out)
    return (f"wrote {out}: schema 2, same graph and threshold {upgraded.threshold.value:.6g}; scores on "
            f"{len(holdout)} held-back images unchanged; inspection limits and drift reference from "
            f"{len(dataset.train)} good images")


def add_statistics(model: Path, metadata: ModelMetadata, good: tuple[Path, ...], out: Path) -> str:
    """A copy of a schema-2 model with the frame statistics of its drift reference that it lacks, measured on the
    good images it was trained on (its data fingerprint says so): a model exported before insightad measured a
    statistic gets the check that rests on it (``others``: another part in view). Its graph, threshold, limits and
    every statistic it holds stay as they were."""
    from insightad_edge.metadata import Calibration
    from insightad_edge.preprocess import decode, prepare

    from .data import fingerprint

    if fingerprint(good) != metadata.data_fingerprint:
        raise ValueError(f"{model} was trained on other good images ({metadata.data_fingerprint}, these are "
                         f"{fingerprint(good)}): its statistics must come from the images it was trained on")
    spec, held = metadata.preprocess, metadata.calibration
    stats = [prepare(decode(p, spec.channels), spec).stats for p in good]
    new = {k: v for k, v in Calibration.measured(held.score, stats).stats.items() if k not in held.stats}
    if not new:
        raise ValueError(f"{model} already holds every frame statistic this insightad measures")
    reference = dataclasses.replace(held, stats={**held.stats, **new})
    save_sealed(onnx.load(str(model)), dataclasses.replace(metadata, calibration=reference), out)
    return (f"wrote {out}: the same graph, threshold and limits, with {', '.join(sorted(new))} measured on "
            f"{len(good)} good images")


def decode_size(path: Path) -> tuple[int, int]:
    from insightad_edge.preprocess import load

    return load(path).shape[:2]  # an unreadable image is an ImageError that names it
