"""The model contract is strict: every field present, of its JSON type, finite and in range; schema 1 still reads."""
import copy
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from models import v1_metadata, write_model
from insightad_edge.cli import main
from insightad_edge.errors import MetadataError
from insightad_edge.metadata import (SCHEMA_VERSION, Calibration, Inspection, ModelMetadata, Preprocess,
                                     Threshold)

VALID = ModelMetadata(
    preprocess=Preprocess(input_size=(144, 432), crop=(1.1, 0.38), crop_offset=(0.06, 0.0), align="center_rotate",
                          frame_size=(1024, 1024)),
    threshold=Threshold(value=4.2, method="quantile", quantile=0.99, n_good=32),
    inspection=Inspection(brightness=(0.36, 1.0), saturated_max=0.05, contrast_min=0.7, part_share_min=0.9,
                          part_area=(0.08, 0.26), border_max=0.06, outside_max=0.4),
    calibration=Calibration(score=(1.0, 2.0, 3.5), stats={"brightness": (0.7, 0.8)}),
    arch="bottleneck", category="screw", data_fingerprint="sha256:abc")


def test_round_trip_keeps_every_field():
    assert VALID.schema_version == SCHEMA_VERSION == 2
    assert ModelMetadata.from_json(VALID.to_json()) == VALID


def test_schema_1_documents_still_read():
    v1 = v1_metadata()
    doc = json.loads(v1.to_json())
    assert "inspection" not in doc and "frame_size" not in doc["preprocess"]
    again = ModelMetadata.from_json(v1.to_json())
    assert again == v1 and again.preprocess.frame_size is None and again.inspection is None


def mutated(path: str, value):
    doc = json.loads(VALID.to_json())
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return json.dumps(doc)


DELETE = object()
BROKEN = [
    ("threshold", DELETE, "threshold is missing"),
    ("threshold.value", DELETE, "threshold.value is missing"),
    ("threshold.value", float("nan"), "must be finite"),
    ("threshold.value", True, "must be a number"),
    ("threshold.value", "4.2", "must be a number"),
    ("threshold.value", None, "must be a number"),
    ("threshold.quantile", None, "must be set for a quantile threshold"),
    ("threshold.n_good", 3.5, "must be an integer"),
    ("threshold.n_good", -1, "must lie in"),
    ("threshold.method", "guess", "must be one of"),
    ("schema_version", True, "schema True is not supported"),
    ("schema_version", 99, "schema 99 is not supported"),
    ("schema_version", "2", "schema '2' is not supported"),
    ("preprocess.work_size", "big", "preprocess.work_size must be an integer"),
    ("preprocess.work_size", 8, "must lie in"),
    ("preprocess.crop", 5, "preprocess.crop must be a list of two"),
    ("preprocess.crop", [1.0, 0.0], "preprocess.crop[1] = 0.0 must lie in"),
    ("preprocess.crop", [1.0, 0.5, 0.2], "list of two"),
    ("preprocess.photometric_target", None, "preprocess.photometric_target must be a number"),
    ("preprocess.photometric_target", 0, "must lie in (0"),
    ("preprocess.align", "guess", "preprocess.align"),
    ("preprocess.channels", 2, "preprocess.channels"),
    ("preprocess.input_size", [8, 8], "preprocess.input_size[0] = 8"),
    ("preprocess.frame_size", None, "preprocess.frame_size must be a list of two"),
    ("preprocess.foreground_dark", 1, "must be true or false"),
    ("preprocess", [1], "preprocess must be an object"),
    ("preprocess.colour", "red", "preprocess.colour is not part of the schema"),
    ("colour", "red", "colour is not part of the schema"),
    ("score.method", "magic", "score.method"),
    ("score.blur_sigma", -1, "score.blur_sigma"),
    ("score.border", 1.5, "score.border must be an integer"),
    ("arch", 3, "arch must be a string"),
    ("input_name", DELETE, "input_name is missing"),
    ("inspection", DELETE, "inspection is missing"),
    ("inspection.brightness", [0.9, 0.1], "(low, high)"),
    ("inspection.outside_max", 2.0, "inspection.outside_max"),
    ("calibration.score", [], "calibration.score must be a list"),
    ("calibration.score", [3.0, 1.0], "must be sorted"),
    ("calibration.stats", {"mood": [1.0]}, "calibration.stats.mood is not a frame statistic"),
]


@pytest.mark.parametrize("path, value, fragment", BROKEN, ids=[f"{p}={v!r}" for p, v, _ in BROKEN])
def test_every_broken_field_is_refused_with_its_name(path, value, fragment):
    with pytest.raises(MetadataError) as error:
        ModelMetadata.from_json(mutated(path, value))
    assert fragment in str(error.value)


@pytest.mark.parametrize("text, fragment", [("not json", "not valid JSON"), ("[1, 2]", "JSON object")])
def test_not_a_document(text, fragment):
    with pytest.raises(MetadataError, match=fragment):
        ModelMetadata.from_json(text)


def test_schema_1_refuses_schema_2_sections_and_colour():
    doc = json.loads(v1_metadata().to_json())
    with pytest.raises(MetadataError, match="inspection is not part of schema 1"):
        ModelMetadata.from_json(json.dumps({**doc, "inspection": {}}))
    colour = copy.deepcopy(doc)
    colour["preprocess"]["channels"] = 3
    with pytest.raises(MetadataError, match="needs schema 2"):
        ModelMetadata.from_json(json.dumps(colour))


@pytest.mark.parametrize("path, value", [("threshold", DELETE), ("preprocess.work_size", "big"),
                                         ("threshold.value", float("nan"))])
def test_cli_and_server_refuse_a_broken_model_with_exit_3(tmp_path, path, value):
    model = write_model(tmp_path / "broken.onnx", VALID, raw_json=mutated(path, value))
    for args in (["info", str(model)], ["score", str(tmp_path), "--model", str(model)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 3, result.output
        assert "model metadata field" in result.stderr and "Traceback" not in result.output
    served = subprocess.run([sys.executable, "-m", "insightad_edge.cli", "serve", "--model", str(model), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert served.returncode == 3 and "model metadata field" in served.stderr and "Traceback" not in served.stderr


def test_every_score_method_the_contract_allows_is_implemented():
    from insightad_edge import metadata, scoring

    assert set(metadata.SCORE_METHODS) == set(scoring.SCORE_METHODS)
