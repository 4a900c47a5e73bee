"""`fit --arch auto`: every candidate in the table, the best admissible one kept, a too-slow one never trained."""
import json

from click.testing import CliRunner

from insightad_edge.metadata import ModelMetadata
from insightad_train import search
from insightad_train.cli import main as train
from insightad_train.config import CANDIDATES

TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu"]


def fit_auto(mvtec, run):
    result = CliRunner().invoke(train, ["fit", "--data", str(mvtec), "--out", str(run), *TINY], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((run / "search.json").read_text()), result.output


def test_auto_tables_every_candidate_and_keeps_the_best_admissible(mvtec, tmp_path):
    rows, output = fit_auto(mvtec, tmp_path / "run")
    assert [r["arch"] for r in rows] == list(CANDIDATES)
    kept = [r for r in rows if r["chosen"]]
    assert len(kept) == 1
    admissible = [r for r in rows if r["admissible"]]
    assert kept[0]["synthetic_auroc"] == max(r["synthetic_auroc"] for r in admissible)
    for row in rows:  # tiny inputs: every candidate is fast enough to be trained and timed
        assert 0.0 <= row["synthetic_auroc"] <= 1.0 and row["model_ms"] > 0 and row["path_ms"] >= row["model_ms"]
    metadata = ModelMetadata.from_json((tmp_path / "run" / "metadata.json").read_text())
    assert metadata.arch == kept[0]["arch"]
    for arch in CANDIDATES:  # the table is printed, one line per candidate
        assert any(line.startswith(arch) for line in output.splitlines())


def test_a_candidate_too_slow_for_the_line_is_listed_but_not_trained(mvtec, tmp_path, monkeypatch):
    """With a model-stage limit no graph can meet, only the first candidate (whose preprocessing the others share)
    is trained; the others are timed untrained and listed as too slow, and a model is still kept."""
    monkeypatch.setattr(search, "MODEL_MS", 0.0)
    rows, output = fit_auto(mvtec, tmp_path / "run")
    first, *others = rows
    assert first["arch"] == CANDIDATES[0] and first["chosen"] and first["synthetic_auroc"] is not None
    for row in others:
        assert row["synthetic_auroc"] is None and not row["admissible"] and row["model_ms"] > 0
        assert not (tmp_path / "run" / "candidates" / row["arch"] / "model.pt").exists()
    assert "too slow: not trained" in output
    assert ModelMetadata.from_json((tmp_path / "run" / "metadata.json").read_text()).arch == CANDIDATES[0]
