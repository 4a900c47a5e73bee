import numpy as np
import pytest

pytest.importorskip("torch", reason="training tests need the train extra")

from synthetic import write_mvtec  # noqa: E402


@pytest.fixture(scope="session")
def mvtec(tmp_path_factory):
    return write_mvtec(tmp_path_factory.mktemp("data") / "widget", np.random.default_rng(0))
