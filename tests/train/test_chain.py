"""The chain as a user runs it: fit -> export -> evaluate -> insightad-edge info / score, on synthetic parts."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from insightad_edge import Detector
from insightad_edge.cli import main as edge
from insightad_train.cli import main as train
from insightad_train.export import PARITY_TOLERANCE
from insightad_train.fit import FitConfig, TorchInfer, fit, load_run, score_paths

TINY = ["--image-size", "32", "--batch-size", "4", "--augment", "light"]


def invoke(cli, *args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def trained(mvtec, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    result = invoke(train, "fit", "--data", mvtec, "--out", run, "--epochs", "2", *TINY)
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.parametrize("arch", ["seed", "bottleneck"])
def test_fit_export_evaluate_score(arch, mvtec, tmp_path):
    run = tmp_path / arch
    assert invoke(train, "fit", "--data", mvtec, "--out", run, "--epochs", "1", "--arch", arch, *TINY).exit_code == 0
    for name in ("config.json", "checkpoint.pt", "history.json", "model.pt", "metadata.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["arch"] == arch

    model = tmp_path / "model.onnx"
    exported = invoke(train, "export", run, "--out", model)
    assert exported.exit_code == 0 and "score difference" in exported.stdout and model.is_file()

    report_dir = tmp_path / "report"
    evaluated = invoke(train, "evaluate", model, "--data", mvtec, "--out", report_dir)
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["image_auroc"]) == {"raw", "equalised_scale", "equalised_shift"}
    assert 0.0 <= report["pixel_auroc"] <= 1.0
    assert set(report["per_defect"]["raw"]) == {"good", "scratch"}
    assert {"mean", "std", "min", "max"} <= set(report["per_defect"]["raw"]["good"])
    for picture in ("roc.png", "histograms.png", "report.md"):
        assert (report_dir / picture).stat().st_size > 0
    assert "honest" in (report_dir / "report.md").read_text()

    info = invoke(edge, "info", model, "--json")
    assert json.loads(info.stdout)["arch"] == arch
    scored = invoke(edge, "score", mvtec / "test" / "scratch", "--model", model, "--format", "jsonl")
    assert scored.exit_code == 0
    assert len(scored.stdout.splitlines()) == 4


def test_export_matches_torch_within_tolerance(trained, mvtec, tmp_path):
    model, metadata = load_run(trained)
    out = tmp_path / "m.onnx"
    invoke(train, "export", trained, "--out", out)
    paths = sorted((mvtec / "test").rglob("*.png"))
    edge_scores = score_paths(paths, Detector(out).metadata, Detector(out).infer)
    torch_scores = score_paths(paths, metadata, TorchInfer(model))
    assert np.max(np.abs(edge_scores - torch_scores)) <= PARITY_TOLERANCE
    assert Detector(out).threshold == pytest.approx(metadata.threshold.value)


def test_evaluate_a_run_folder_directly(trained, mvtec):
    result = invoke(train, "evaluate", trained, "--data", mvtec)
    assert result.exit_code == 0 and (trained / "report" / "report.json").is_file()


def test_interrupted_run_resumes_to_the_same_weights(mvtec, tmp_path):
    config = FitConfig(data=str(mvtec), arch="bottleneck", image_size=32, epochs=2, batch_size=4)
    fit(config, tmp_path / "straight", progress=False)
    assert fit(config, tmp_path / "resumed", time_budget_s=0.0, progress=False) is None  # stops after epoch 1
    assert len(json.loads((tmp_path / "resumed" / "history.json").read_text())) == 1
    fit(config, tmp_path / "resumed", progress=False)
    a = torch.load(tmp_path / "straight" / "model.pt")
    b = torch.load(tmp_path / "resumed" / "model.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_a_run_folder_refuses_another_configuration(mvtec, tmp_path):
    config = FitConfig(data=str(mvtec), image_size=32, epochs=1, batch_size=4)
    fit(config, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        fit(FitConfig(data=str(mvtec), image_size=32, epochs=3, batch_size=4), tmp_path / "run", progress=False)


def test_augment_command_is_reproducible(mvtec, tmp_path):
    for out in ("a", "b"):
        assert invoke(train, "augment", "--data", mvtec, "--out", tmp_path / out, "--copies", "2").exit_code == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 32
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
