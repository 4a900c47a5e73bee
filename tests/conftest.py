"""Shared fixtures: synthetic images and a tiny real ONNX model built with the onnx package (no torch)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import part_image  # noqa: E402


def make_onnx_model(path: Path, metadata=None, with_metadata: bool = True) -> Path:
    """A small real ONNX graph: reconstruction = 3x3 box blur of the input, anomaly map = squared difference."""
    import onnx
    from onnx import TensorProto, helper

    from insightad_edge.metadata import METADATA_KEY, ModelMetadata, Preprocess, Score, Threshold

    metadata = metadata or ModelMetadata(
        preprocess=Preprocess(input_size=(32, 64), work_size=64, photometric_target=0.75, align="center_rotate",
                              crop=(0.8, 0.4)),
        score=Score(blur_sigma=1.0, border=1), threshold=Threshold(value=0.01, method="quantile", quantile=0.99),
        arch="test-blur", category="synthetic")
    h, w = metadata.preprocess.input_size
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 3, 3], [1 / 9.0] * 9)
    nodes = [helper.make_node("Conv", ["image", "w"], ["reconstruction"], pads=[1, 1, 1, 1]),
             helper.make_node("Sub", ["image", "reconstruction"], ["difference"]),
             helper.make_node("Mul", ["difference", "difference"], ["anomaly_map"])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 1, h, w])
               for name in ("anomaly_map", "reconstruction")]
    graph = helper.make_graph(
        nodes, "blur", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, h, w])], outputs,
        [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    return make_onnx_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def part(rng) -> np.ndarray:
    return part_image(rng, 128)[0]
