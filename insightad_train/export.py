"""Export a trained run to one self-describing ONNX file and prove the edge computes the same scores."""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from insightad_edge.detector import Detector
from insightad_edge.metadata import METADATA_KEY, ModelMetadata

from .fit import TorchInfer, load_run, score_paths

PARITY_TOLERANCE = 1e-4
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
                f"(tolerance {PARITY_TOLERANCE:g})")


def write_onnx(mapper: torch.nn.Module, metadata: ModelMetadata, out: Path) -> None:
    """ONNX with a dynamic batch axis, outputs (anomaly map, reconstruction), and the contract in ``metadata_props``."""
    height, width = metadata.preprocess.input_size
    example = torch.zeros(1, metadata.preprocess.channels, height, width)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [metadata.input_name, metadata.output_name, "reconstruction"]
    # The TorchScript exporter: exact here (parity ~1e-6) and needs no onnxscript; torch>=2.9 marks it
    # deprecated, which is no news to a user running `insightad-train export`, so that warning is muted.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(mapper.eval(), (example,), str(out), input_names=names[:1], output_names=names[1:],
                          opset_version=OPSET, dynamo=False, dynamic_axes={name: {0: "batch"} for name in names})
    graph = onnx.load(str(out))
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, {METADATA_KEY: metadata.to_json()})
    graph.producer_name = "insightad"
    onnx.save(graph, str(out))


def export(run: Path, out: Path, parity_paths: list[Path] | None = None) -> ExportReport:
    """Export RUN to OUT, then score held-back images with both torch and onnxruntime and compare."""
    began = time.monotonic()
    model, metadata = load_run(run)
    write_onnx(model, metadata, out)
    if parity_paths is None:
        parity_paths = _holdout(run)[:8]
    if not parity_paths:
        raise ValueError("no images for the parity check: pass some with --parity-images")
    edge = Detector(out)
    torch_scores = score_paths(parity_paths, metadata, TorchInfer(model))
    edge_scores = score_paths(parity_paths, edge.metadata, edge.infer)
    difference = float(np.max(np.abs(torch_scores - edge_scores)))
    if not difference <= PARITY_TOLERANCE:
        out.unlink()
        raise RuntimeError(f"exported model disagrees with torch by {difference:.3g} > {PARITY_TOLERANCE:g}; removed {out}")
    return ExportReport(out, out.stat().st_size, time.monotonic() - began, difference, len(parity_paths))


def _holdout(run: Path) -> list[Path]:
    listing = run / "holdout.json"
    return [Path(p) for p in json.loads(listing.read_text()) if Path(p).is_file()] if listing.is_file() else []
