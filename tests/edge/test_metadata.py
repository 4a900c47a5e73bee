import json

import pytest

from insightad_edge.errors import MetadataError
from insightad_edge.metadata import SCHEMA_VERSION, ModelMetadata, Preprocess, Threshold


def test_round_trip_keeps_every_field():
    meta = ModelMetadata(preprocess=Preprocess(input_size=(144, 432), crop=(1.1, 0.38), crop_offset=(0.06, 0.0),
                                               align="center_rotate"),
                         threshold=Threshold(value=0.0123, method="youden", quantile=None, n_good=30, n_defect=9),
                         arch="bottleneck", category="screw", data_fingerprint="sha256:abc")
    assert ModelMetadata.from_json(meta.to_json()) == meta


@pytest.mark.parametrize("text, fragment", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"schema_version": 99}), "schema 99 is not supported"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "colour": "red"}), "unexpected field"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "preprocess": {"align": "guess"}}), "align 'guess'"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "preprocess": {"channels": 3}}), "channels 3"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "preprocess": {"input_size": [8, 8]}}), "input_size"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "score": {"method": "magic"}}), "score method"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "threshold": {"value": "high"}}), "threshold"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "preprocess": [1]}), "must be an object"),
])
def test_invalid_metadata_is_refused_with_the_reason(text, fragment):
    with pytest.raises(MetadataError, match=fragment):
        ModelMetadata.from_json(text)
