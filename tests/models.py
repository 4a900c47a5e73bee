"""Tiny real ONNX models built with the onnx package (no torch), with real schema-1 and schema-2 metadata."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from synthetic import part_image

TINY_PREPROCESS = dict(input_size=(32, 64), work_size=64, photometric_target=0.75, align="center_rotate",
                       crop=(0.8, 0.4))


def _graph(metadata, template=None):
    """reconstruction = the ``template`` (what a good aligned part looks like), or else a 3x3 box blur of the
    input; anomaly map = squared difference, summed over channels."""
    from onnx import TensorProto, helper

    h, w = metadata.preprocess.input_size
    c = metadata.preprocess.channels
    weight = helper.make_tensor("w", TensorProto.FLOAT, [c, 1, 3, 3], [1 / 9.0] * 9 * c)
    ones = helper.make_tensor("sum", TensorProto.FLOAT, [1, c, 1, 1], [1.0] * c)
    if template is None:
        first = helper.make_node("Conv", ["image", "w"], ["reconstruction"], pads=[1, 1, 1, 1], group=c)
    else:
        tensor = helper.make_tensor("template", TensorProto.FLOAT, [1, c, h, w], template.astype(np.float32).ravel())
        first = helper.make_node("Constant", [], ["template_out"], value=tensor)
    nodes = [first] if template is None else [first, helper.make_node("Add", ["template_out", "zero"], ["reconstruction"])]
    nodes += [helper.make_node("Sub", ["image", "reconstruction"], ["difference"]),
             helper.make_node("Mul", ["difference", "difference"], ["squared"]),
             helper.make_node("Conv", ["squared", "sum"], ["anomaly_map"])]
    outputs = [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["batch", 1, h, w]),
               helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, [None, c, h, w])]
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    graph = helper.make_graph(
        nodes, "blur", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", c, h, w])], outputs,
        [weight, ones] if template is None else [ones, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_model(path: Path, metadata, with_metadata: bool = True, raw_json: str | None = None,
                template=None) -> Path:
    import onnx
    from onnx import helper

    from insightad_edge.metadata import METADATA_KEY

    model = _graph(metadata, template)
    if with_metadata:
        helper.set_model_props(model, {METADATA_KEY: raw_json if raw_json is not None else metadata.to_json()})
    onnx.save(model, str(path))
    return path


def write_fragile_model(path: Path, metadata) -> Path:
    """A model whose arithmetic breaks on real frames only: map = log(image - 0.25), finite on the plain
    mid-gray input a Detector checks at load, NaN wherever a frame is darker than a quarter."""
    import onnx
    from onnx import TensorProto, helper

    from insightad_edge.metadata import METADATA_KEY

    h, w = metadata.preprocess.input_size
    c = metadata.preprocess.channels
    nodes = [helper.make_node("Sub", ["image", "quarter"], ["shifted"]), helper.make_node("Log", ["shifted"], ["logs"]),
             helper.make_node("ReduceMean", ["logs"], ["anomaly_map"], axes=[1], keepdims=1)]
    graph = helper.make_graph(
        nodes, "fragile", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", c, h, w])],
        [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["batch", 1, h, w])],
        [helper.make_tensor("quarter", TensorProto.FLOAT, [1], [0.25])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.save(model, str(path))
    return path


def v1_metadata():
    from insightad_edge.metadata import ModelMetadata, Preprocess, Score, Threshold

    return ModelMetadata(preprocess=Preprocess(**TINY_PREPROCESS), score=Score(blur_sigma=1.0, border=1),
                         threshold=Threshold(value=0.01, method="quantile", quantile=0.99, n_good=40),
                         arch="test-blur", category="synthetic", schema_version=1)


def calibrated(path: Path, metadata, good_frames) -> Path:
    """Measure the good frames the way training does (stats, scores) and write a schema-2 model with them."""
    import onnxruntime as ort

    from insightad_edge.detector import run_pipeline
    from insightad_edge.inspectability import limits_from
    from insightad_edge.metadata import Calibration
    from insightad_edge.preprocess import decode, prepare

    template = np.mean([prepare(decode(f, metadata.preprocess.channels), metadata.preprocess).input
                        for f in good_frames], axis=0)[None]
    session = ort.InferenceSession(str(write_model(path, metadata, with_metadata=False, template=template)))
    results = run_pipeline(good_frames, dataclasses.replace(metadata, inspection=None, calibration=None), 0.0,
                           lambda inputs: session.run(["anomaly_map"], {"image": inputs})[0])  # as training measures
    stats = [r.stats for r in results]
    scores = [r.score for r in results]
    threshold = dataclasses.replace(metadata.threshold, value=max(scores) * 1.5, n_good=len(scores))
    return write_model(path, dataclasses.replace(
        metadata, schema_version=2, inspection=limits_from(stats), threshold=threshold,
        calibration=Calibration.measured(scores, stats)), template=template)


def make_onnx_model(path: Path, metadata=None, with_metadata: bool = True, size: int = 128) -> Path:
    """A schema-2 model of a good synthetic part, calibrated on frames of ``size`` pixels (or a blur model
    with exactly ``metadata`` when given)."""
    if metadata is not None:
        return write_model(path, metadata, with_metadata)
    base = v1_metadata()
    base = dataclasses.replace(base, preprocess=dataclasses.replace(base.preprocess, frame_size=(size, size)))
    rng = np.random.default_rng(99)
    frames = [part_image(rng, size)[0] for _ in range(40)]
    return calibrated(path, base, frames) if with_metadata else write_model(path, base, with_metadata=False)


def as_schema_1(source: Path, target: Path) -> Path:
    """The same graph with its metadata written as insightad 0.1 would have (schema 1: no frame size,
    inspection limits or drift reference)."""
    return rewritten(source, target, lambda meta: dataclasses.replace(
        meta, schema_version=1, inspection=None, calibration=None,
        preprocess=dataclasses.replace(meta.preprocess, frame_size=None)))


def rewritten(source: Path, target: Path, change) -> Path:
    """The same graph with its metadata passed through CHANGE (metadata -> metadata)."""
    import onnx
    from onnx import helper

    from insightad_edge.metadata import METADATA_KEY, ModelMetadata

    model = onnx.load(str(source))
    meta = ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    del model.metadata_props[:]
    helper.set_model_props(model, {METADATA_KEY: change(meta).to_json()})
    onnx.save(model, str(target))
    return target
