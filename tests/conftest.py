"""Shared fixtures: synthetic images and tiny real ONNX models (see models.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import make_onnx_model, v1_metadata, write_model
from synthetic import part_image


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    return make_onnx_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def v1_model_path(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "tiny_v1.onnx", v1_metadata())


@pytest.fixture(autouse=True)
def _no_model_from_the_environment(monkeypatch):
    """Tests say which model and server settings they use; a user's environment must not change what they check."""
    for name in ("INSIGHTAD_MODEL", "INSIGHTAD_API_KEY", "INSIGHTAD_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def part(rng) -> np.ndarray:
    return part_image(rng, 128)[0]
