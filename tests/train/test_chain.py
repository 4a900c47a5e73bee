"""The chain as a user runs it: fit -> export -> evaluate -> insightad-edge info / score, on synthetic parts."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from insightad_edge import Detector
from insightad_edge.cli import main as edge
from insightad_train.cli import main as train
from insightad_train.export import PARITY_TOLERANCE
from insightad_edge.errors import DataError
from insightad_train.calibrate import score_paths
from insightad_train.config import FitConfig
from insightad_train.fit import TorchInfer, fit, load_run

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
    assert Detector(model).sealed  # a copy that differs from this file by one bit is refused

    report_dir = tmp_path / "report"
    evaluated = invoke(train, "evaluate", model, "--data", mvtec, "--out", report_dir)
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["image_auroc"]) == {"raw", "equalised_scale", "equalised_shift"}
    if arch == "bottleneck":  # one epoch of the tiny bottleneck model already finds the scratches (0.99 measured)
        assert report["pixel_auroc"] > 0.9 and report["image_auroc"]["equalised_scale"] > 0.8
        assert report["from_the_defects"]["peaks_in_defect"] >= 0.75  # the map peaks on the scratch
    else:  # the seed design copies its input, scratches included: its map is no defect detector
        assert np.isfinite(report["pixel_auroc"])
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


def test_a_model_is_never_written_over_a_file_of_another_kind(trained, mvtec, tmp_path):
    """`export RUN --out data/train/good/000.png` (a mistyped path) wrote the model over a training image without
    a word; so would `--out exported/screw.json`. --out must name a model file (.onnx), for upgrade too. And
    `evaluate --out` among the data's images wrote its plots there, for the next fit to train on."""
    image = sorted((mvtec / "train" / "good").iterdir())[0]
    before = image.read_bytes()
    assert invoke(train, "export", trained, "--out", tmp_path / "m.onnx").exit_code == 0
    for command in (["export", trained], ["upgrade", tmp_path / "m.onnx", "--data", mvtec]):
        refused = invoke(train, *command, "--out", image)
        assert refused.exit_code == 2 and "does not end in .onnx" in refused.stderr, refused.output
    assert image.read_bytes() == before
    for inside in (mvtec / "train" / "good", mvtec / "test" / "report"):  # the plots would become parts
        refused = invoke(train, "evaluate", tmp_path / "m.onnx", "--data", mvtec, "--out", inside)
        assert refused.exit_code == 2 and "lies among" in refused.stderr, refused.output
    assert not (mvtec / "test" / "report").exists() and not list((mvtec / "train" / "good").glob("roc.png"))


def test_export_matches_torch_within_tolerance(trained, mvtec, tmp_path):
    model, metadata = load_run(trained)
    out = tmp_path / "m.onnx"
    invoke(train, "export", trained, "--out", out)
    paths = sorted((mvtec / "test").rglob("*.png"))
    edge_scores = score_paths(paths, Detector(out).metadata, Detector(out).infer)
    torch_scores = score_paths(paths, metadata, TorchInfer(model))
    assert np.max(np.abs(edge_scores - torch_scores)) <= PARITY_TOLERANCE * max(1.0, metadata.threshold.value)
    assert Detector(out).threshold == pytest.approx(metadata.threshold.value)


def test_a_failed_export_leaves_out_as_it_was(trained, tmp_path):
    """A station may start from OUT at any moment: it must find the model in service or the new one, checked."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "holdout.json").write_text("[]")  # the held-back images moved away: nothing to check the export on
    out = tmp_path / "line.onnx"
    failed = invoke(train, "export", run, "--out", out)
    assert failed.exit_code == 2 and "parity" in failed.stderr and not out.exists()
    out.write_bytes(b"the model in service")
    assert invoke(train, "export", run, "--out", out).exit_code == 2 and out.read_bytes() == b"the model in service"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.onnx", "run"]


def test_evaluate_leaves_out_test_images_the_model_learned_from(trained, mvtec, tmp_path):
    """A good test image copied from the training folder scores as low as a learned picture does: it flatters."""
    data = tmp_path / "data"
    shutil.copytree(mvtec, data)
    shutil.copy(sorted((data / "train" / "good").iterdir())[0], data / "test" / "good" / "copied.png")
    done = invoke(train, "evaluate", trained, "--data", data, "--out", tmp_path / "report")
    assert done.exit_code == 0 and "1 test images are exact copies" in done.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["copies_of_training_images"] == ["test/good/copied.png"]
    assert len(report["scores"]) == len(list((mvtec / "test").rglob("*.png")))
    assert "left out" in (tmp_path / "report" / "report.md").read_text()


def test_evaluate_a_run_folder_directly(trained, mvtec):
    result = invoke(train, "evaluate", trained, "--data", mvtec)
    assert result.exit_code == 0 and (trained / "report" / "report.json").is_file()


def test_defects_without_a_mask_are_left_out_of_the_pixel_auroc(trained, mvtec, tmp_path):
    """A defect without its mask has unknown defect pixels: counting them as good pixels would bend the pixel AUROC."""
    import shutil

    partial, fewer = tmp_path / "partial", tmp_path / "fewer"
    shutil.copytree(mvtec, partial)
    shutil.copytree(mvtec, fewer)
    unmasked = sorted((partial / "ground_truth" / "scratch").iterdir())[:2]
    for mask in unmasked:
        mask.unlink()
        (fewer / "test" / "scratch" / mask.name.replace("_mask", "")).unlink()
    reports = {}
    for data in (partial, fewer):
        assert invoke(train, "evaluate", trained, "--data", data, "--out", tmp_path / f"{data.name}-report").exit_code == 0
        reports[data.name] = json.loads((tmp_path / f"{data.name}-report" / "report.json").read_text())
    assert reports["partial"]["defects_without_mask"] == 2 and reports["fewer"]["defects_without_mask"] == 0
    assert reports["partial"]["pixel_auroc"] == pytest.approx(reports["fewer"]["pixel_auroc"], abs=1e-12)
    assert "2 defective images without a mask left out" in (tmp_path / "partial-report" / "report.md").read_text()


def test_fit_on_cuda_without_one_is_a_usage_error(mvtec, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on every line PC and CI machine
    result = CliRunner().invoke(train, ["fit", "--data", str(mvtec), "--out", str(tmp_path / "run"), "--device", "cuda",
                                        "--arch", "bottleneck", *TINY])
    assert result.exit_code == 2 and "finds no CUDA GPU here" in result.output
    assert CliRunner().invoke(train, ["fit", "--data", str(mvtec), "--out", str(tmp_path / "run"),
                                      "--device", "gpu"]).exit_code == 2


def test_evaluate_refuses_a_test_split_of_one_kind(trained, mvtec, tmp_path):
    """Without good test images (or without defective ones) an AUROC is undefined: refused, not reported as nan."""
    import shutil

    shutil.copytree(mvtec, tmp_path / "rejects")
    shutil.rmtree(tmp_path / "rejects" / "test" / "good")
    result = CliRunner().invoke(train, ["evaluate", str(trained), "--data", str(tmp_path / "rejects")])
    assert result.exit_code == 3 and "holds only defective images" in result.output


def test_evaluate_names_unreadable_test_images_and_masks_before_scoring_any(trained, mvtec, tmp_path):
    """A corrupt test image would end the evaluation halfway, or leaving it out would change the numbers: every
    image and mask is read first, and those that do not decode are named together, no report written."""
    from synthetic import corrupt_header_bmp

    data = tmp_path / "damaged"
    shutil.copytree(mvtec, data)
    (data / "test" / "scratch" / "zzz.bmp").write_bytes(corrupt_header_bmp())  # the last to be scored
    result = CliRunner().invoke(train, ["evaluate", str(trained), "--data", str(data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 3 and "1 of the 9 test images cannot be used" in result.output, result.output
    assert "zzz.bmp is not a readable image (its header is corrupt" in result.output
    assert not (tmp_path / "r" / "report.json").exists()
    (data / "test" / "scratch" / "zzz.bmp").unlink()
    next((data / "ground_truth" / "scratch").iterdir()).write_bytes(b"")
    result = CliRunner().invoke(train, ["evaluate", str(trained), "--data", str(data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 3 and "1 of the 4 ground-truth masks cannot be used" in result.output, result.output
    assert "_mask.png is empty (0 bytes)" in result.output


def test_a_test_image_without_a_verdict_is_counted_not_averaged(trained, mvtec, tmp_path):
    """An empty fixture in the test split gets no verdict (flagged, for the AUROC): the report counts it per defect
    type, keeps it out of the score statistics and the histogram, and stays strict JSON (it wrote Infinity and NaN,
    with numpy's warnings on stderr)."""
    import warnings

    from synthetic import background

    data = tmp_path / "with_empty"
    shutil.copytree(mvtec, data)
    cv2.imwrite(str(data / "test" / "good" / "empty.png"), background(np.random.default_rng(9), 96, 96))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = invoke(train, "evaluate", trained, "--data", data, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output

    def no_constants(name):
        raise AssertionError(f"report.json holds {name}")

    report = json.loads((tmp_path / "r" / "report.json").read_text(), parse_constant=no_constants)
    good = report["per_defect"]["equalised_scale"]["good"]
    assert good["n"] == 5 and good["not_inspectable"] == 1 and np.isfinite(good["max"])
    assert report["not_inspectable"]["equalised_scale"] == 1
    assert next(row for row in report["scores"] if row["path"] == "test/good/empty.png")["equalised_scale"] is None
    assert "| good | 5 | 1 |" in (tmp_path / "r" / "report.md").read_text()


def test_evaluate_refuses_a_file_that_is_not_a_model(mvtec, tmp_path):
    """Whatever its name, a file is taken as an exported model, and the edge's own check says why it is not one."""
    not_a_model = tmp_path / "model.bin"
    not_a_model.write_bytes(b"not a model")
    result = CliRunner().invoke(train, ["evaluate", str(not_a_model), "--data", str(mvtec)])
    assert result.exit_code == 3 and "is not a usable ONNX model" in result.output


def test_every_number_option_of_both_tools_is_a_finite_number():
    """NaN passes click's own float ranges; every float option of insightad-edge and insightad-train uses the
    type that refuses it."""
    import click

    from insightad_edge.console import Number

    floats = [option for group in (edge, train) for command in group.commands.values() for option in command.params
              if isinstance(option.type, click.types.FloatParamType)]
    assert len(floats) >= 15 and all(isinstance(option.type, Number) for option in floats), [o.name for o in floats]


def assert_same_weights(a_run, b_run):
    a = torch.load(a_run / "model.pt", weights_only=True)
    b = torch.load(b_run / "model.pt", weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_interrupted_run_resumes_to_the_same_weights(mvtec, tmp_path):
    config = FitConfig(data=str(mvtec), arch="bottleneck", image_size=32, epochs=2, batch_size=4)
    fit(config, tmp_path / "straight", device="cpu", progress=False)
    assert fit(config, tmp_path / "resumed", device="cpu", time_budget_s=0.0, progress=False) is None  # after epoch 1
    assert len(json.loads((tmp_path / "resumed" / "history.json").read_text())) == 1
    fit(config, tmp_path / "resumed", device="cpu", progress=False)
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")


def test_more_epochs_continue_a_finished_run(mvtec, tmp_path):
    """fit --epochs 1, then fit --epochs 2 on the same folder, equals fit --epochs 2 straight away."""
    for epochs in ("1", "2"):
        done = invoke(train, "fit", "--data", mvtec, "--out", tmp_path / "extended", "--epochs", epochs,
                      "--arch", "bottleneck", "--device", "cpu", *TINY)
        assert done.exit_code == 0, done.output
    assert invoke(train, "fit", "--data", mvtec, "--out", tmp_path / "straight", "--epochs", "2", "--device", "cpu",
                  "--arch", "bottleneck", *TINY).exit_code == 0
    assert len(json.loads((tmp_path / "extended" / "history.json").read_text())) == 2
    assert_same_weights(tmp_path / "straight", tmp_path / "extended")


def test_a_run_stopped_as_it_finishes_is_unfinished_not_new_weights_under_the_old_threshold(mvtec, tmp_path, monkeypatch):
    """Extending a finished run rewrote model.pt, then metadata.json: stopped between the two (Ctrl-C, a power cut),
    the folder held the new weights under the old threshold and drift reference, and `export` sealed them as one
    model. Now the run is unfinished until its metadata, written last, lands; the same command finishes it."""
    from insightad_edge.errors import ModelError
    from insightad_edge.metadata import ModelMetadata

    run = tmp_path / "run"

    def fitted(out, epochs):
        return invoke(train, "fit", "--data", mvtec, "--out", out, "--epochs", epochs, "--arch", "bottleneck",
                      "--device", "cpu", *TINY).exit_code == 0

    assert fitted(run, "1")

    def stopped(self):  # Ctrl-C as the new metadata is about to be written: model.pt holds the new weights
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(ModelMetadata, "to_json", stopped)
        with pytest.raises(KeyboardInterrupt):
            fit(FitConfig(data=str(mvtec), arch="bottleneck", epochs=2, image_size=32, batch_size=4), run,
                device="cpu", progress=False)
    with pytest.raises(ModelError, match="not a finished training run"):
        load_run(run)
    assert fitted(run, "2") and fitted(tmp_path / "straight", "2")
    assert_same_weights(tmp_path / "straight", run)
    assert load_run(run)[1].threshold == load_run(tmp_path / "straight")[1].threshold


def test_a_second_fit_on_a_run_folder_in_use_is_refused(mvtec, tmp_path):
    """Two fits on one --out (another terminal, a retrain scheduled over a manual one) took up each other's
    checkpoints and could end with one's weights under the other's metadata. The second is refused (exit 2)
    while the first runs; once it is gone (killed, here), the folder is free again."""
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    command = ["fit", "--data", str(mvtec), "--out", str(run), "--arch", "bottleneck", "--device", "cpu", *TINY]
    first = subprocess.Popen([sys.executable, "-m", "insightad_train.cli", *command, "--epochs", "500"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").is_file() and time.monotonic() < deadline:  # training: it holds the folder
            time.sleep(0.2)
        second = invoke(train, *command, "--epochs", "1")
        assert second.exit_code == 2 and f"another fit is running in {run}" in second.stderr, second.output
    finally:
        first.kill()
        first.wait()
    trained = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] + 1
    again = invoke(train, *command, "--epochs", trained + 1)  # free again: it goes on where the killed one stopped
    assert again.exit_code == 0, again.output


def test_good_images_beyond_the_free_memory_are_refused_before_training(mvtec, tmp_path, monkeypatch):
    """Every good image is kept at working size while training: 20 000 colour ones at 384x384 take 35 GB, and the
    operating system ended such a run after its images were read, saying nothing of why. Here the machine is made
    to have 10 kB free (its real figure, MemAvailable, is read: more than 1 MB)."""
    from insightad_train import fit as fitting

    assert fitting.available_memory() > 1_000_000
    monkeypatch.setattr(fitting, "available_memory", lambda: 10_000)
    refused = invoke(train, "fit", "--data", mvtec, "--out", tmp_path / "run", "--arch", "bottleneck", "--epochs", "1",
                     "--device", "cpu", *TINY)
    assert refused.exit_code == 3 and "GB of memory to train on, and this machine has 0.0 GB free" in refused.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_run_folder_refuses_to_go_on_with_other_good_images(mvtec, tmp_path):
    """Images added to DATA between `fit --epochs 1` and `fit --epochs 2` went on in silence: the held-back split
    moved onto images epoch 1 had trained on, and the threshold was calibrated on them. Now the run is refused
    (exit 2) before anything in the run folder changes, a search's as well (its finished candidates would have
    been reused as if trained on the new images)."""
    from synthetic import part_image

    data = tmp_path / "widget"
    shutil.copytree(mvtec, data)
    one = ["fit", "--data", data, "--out", tmp_path / "run", "--arch", "bottleneck", "--device", "cpu", *TINY]
    assert invoke(train, *one, "--epochs", "1").exit_code == 0
    auto = ["fit", "--data", data, "--out", tmp_path / "auto", "--device", "cpu", *TINY]
    assert invoke(train, *auto, "--epochs", "1").exit_code == 0
    rng = np.random.default_rng(27)
    for i in range(5):
        cv2.imwrite(str(data / "train" / "good" / f"added_{i}.png"), part_image(rng, 96)[0])
    for command, run in ((one, "run"), (auto, "auto")):
        before = sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / run).rglob("*"))
        refused = invoke(train, *command, "--epochs", "2")
        assert refused.exit_code == 2 and "holds a run on other good images" in refused.output, refused.output
        assert sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / run).rglob("*")) == before  # nothing touched
    assert invoke(train, *one[:4], tmp_path / "new", *one[5:], "--epochs", "2").exit_code == 0


def test_a_run_folder_refuses_another_configuration(mvtec, tmp_path):
    config = FitConfig(data=str(mvtec), arch="bottleneck", image_size=32, epochs=1, batch_size=4)
    fit(config, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="another configuration .*batch_size"):
        fit(FitConfig(data=str(mvtec), arch="bottleneck", image_size=32, epochs=3, batch_size=8), tmp_path / "run",
            progress=False)
    refused = invoke(train, "fit", "--data", mvtec, "--out", tmp_path / "run", "--epochs", "2", "--batch-size", "8",
                     "--image-size", "32", "--arch", "bottleneck")
    assert refused.exit_code == 2 and "another configuration" in refused.stderr


def test_a_run_saved_before_a_setting_existed_is_read_as_it_ran(mvtec, tmp_path):
    """A run from before --context (no such field in its config.json or checkpoint) exports as it did, and
    going on with it says which value it ran with."""
    run, old = tmp_path / "run", tmp_path / "old"
    assert invoke(train, "fit", "--data", mvtec, "--out", run, "--arch", "patchknn", "--context", "0",
                  *TINY).exit_code == 0
    assert invoke(train, "fit", "--data", mvtec, "--out", old, "--arch", "bottleneck", "--epochs", "1",
                  *TINY).exit_code == 0
    for folder in (run, old):
        saved = json.loads((folder / "config.json").read_text())
        del saved["context"]
        (folder / "config.json").write_text(json.dumps(saved))
    checkpoint = torch.load(old / "checkpoint.pt", weights_only=True)
    del checkpoint["config"]["context"]
    torch.save(checkpoint, old / "checkpoint.pt")
    assert invoke(train, "export", run, "--out", tmp_path / "m.onnx").exit_code == 0
    assert Detector(tmp_path / "m.onnx").metadata.arch == "patchknn"
    refused = invoke(train, "fit", "--data", mvtec, "--out", old, "--arch", "bottleneck", "--epochs", "2", *TINY)
    assert refused.exit_code == 2 and "context 0.0 there, 0.5 now" in refused.stderr, refused.output
    assert invoke(train, "fit", "--data", mvtec, "--out", old, "--arch", "bottleneck", "--epochs", "2",
                  "--context", "0", *TINY).exit_code == 0


def test_too_few_good_images_are_refused_with_the_minimum(tmp_path):
    from synthetic import write_mvtec

    small = write_mvtec(tmp_path / "small", np.random.default_rng(1), n_train=16, n_test=1)
    with pytest.raises(DataError, match="16 good images are too few: insightad needs at least 30"):
        fit(FitConfig(data=str(small), image_size=32, epochs=1), tmp_path / "run", progress=False)
    refused = invoke(train, "fit", "--data", small, "--out", tmp_path / "run", "--epochs", "1", *TINY)
    assert refused.exit_code == 3 and "at least 30" in refused.stderr and "Traceback" not in refused.output


def test_a_model_calibrated_on_few_images_says_so(mvtec, tmp_path):
    """32 good images: 12 would be 10% but 10 are the minimum held back; under 30 the threshold is a rough guess."""
    run = tmp_path / "run"
    done = invoke(train, "fit", "--data", mvtec, "--out", run, "--epochs", "1", *TINY)
    assert done.exit_code == 0 and "rough guess" in done.stderr
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["threshold"]["n_good"] == 10 and metadata["schema_version"] == 2
    assert invoke(train, "export", run, "--out", tmp_path / "m.onnx").exit_code == 0
    info = invoke(edge, "info", tmp_path / "m.onnx")
    assert "WARNING" in info.stdout and "rough guess" in info.stdout


def test_exit_codes_of_the_training_commands(mvtec, tmp_path):
    assert invoke(train, "evaluate", tmp_path, "--data", mvtec).exit_code == 3  # not a run folder
    assert invoke(train, "export", tmp_path, "--out", tmp_path / "no" / "m.onnx").exit_code == 2
    assert invoke(train, "fit", "--data", mvtec, "--out", tmp_path / "r", "--arch", "vae").exit_code == 2
    from synthetic import corrupt_header_bmp

    damaged = tmp_path / "damaged"  # an image OpenCV's decoder raises on: a line with the file's name, exit 3
    damaged.mkdir()
    (damaged / "part.bmp").write_bytes(corrupt_header_bmp())
    refused = invoke(train, "augment", "--data", damaged, "--out", tmp_path / "aug")
    assert refused.exit_code == 3 and "part.bmp is not a readable image (its header is corrupt" in refused.stderr
    (tmp_path / "a_file").write_text("not a folder")  # an output folder that cannot be made: before any work
    for command in (["fit", "--data", mvtec], ["augment", "--data", mvtec], ["evaluate", tmp_path, "--data", mvtec]):
        refused = invoke(train, *command, "--out", tmp_path / "a_file" / "out")
        assert refused.exit_code == 2 and "cannot make folder" in refused.stderr, refused.output


def test_augment_command_is_reproducible(mvtec, tmp_path):
    for out in ("a", "b"):
        assert invoke(train, "augment", "--data", mvtec, "--out", tmp_path / out, "--copies", "2").exit_code == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 64
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_augment_keeps_every_copy_of_images_that_share_a_name(mvtec, tmp_path):
    import cv2

    data = tmp_path / "data"
    shutil.copytree(mvtec / "train", data / "train")
    first = sorted((data / "train" / "good").iterdir())[0]
    cv2.imwrite(str(first.with_suffix(".bmp")), cv2.imread(str(first)))  # a.png and a.bmp side by side
    result = invoke(train, "augment", "--data", data, "--out", tmp_path / "a", "--copies", "2")
    assert result.exit_code == 0 and "wrote 66 images" in result.output
    assert len(list((tmp_path / "a").iterdir())) == 66


def test_augment_refuses_to_write_its_copies_among_the_good_images(mvtec, tmp_path):
    """Copies written beside the good images are good images to the next fit: some held back, the threshold
    calibrated on copies of what it trained on. Refused before one is written (fit augments as it trains). So are
    copies among the test images, which evaluate would score as parts the model never saw."""
    data = tmp_path / "data"
    shutil.copytree(mvtec / "train", data / "train")
    good = data / "train" / "good"
    before = sorted(good.iterdir())
    for out in (good, data / "train" / ".." / "train" / "good"):
        refused = invoke(train, "augment", "--data", data, "--out", out, "--copies", "1")
        assert refused.exit_code == 2 and "holds the good images" in refused.stderr, refused.output
    among_tests = invoke(train, "augment", "--data", data, "--out", data / "test" / "good", "--copies", "1")
    assert among_tests.exit_code == 2 and "lies among" in among_tests.stderr, among_tests.output
    assert not (data / "test").exists()
    assert sorted(good.iterdir()) == before


def test_upgrade_turns_a_schema_1_model_into_schema_2_with_the_same_scores(trained, mvtec, tmp_path):
    """A model exported by insightad 0.1 (schema 1) gains inspection limits and a drift reference, nothing else."""
    from models import as_schema_1

    current = tmp_path / "current.onnx"
    assert invoke(train, "export", trained, "--out", current).exit_code == 0
    as_schema_1(current, tmp_path / "old.onnx")
    done = invoke(train, "upgrade", tmp_path / "old.onnx", "--data", mvtec, "--out", tmp_path / "new.onnx")
    assert done.exit_code == 0, done.output
    old, new = Detector(tmp_path / "old.onnx"), Detector(tmp_path / "new.onnx")
    assert old.metadata.schema_version == 1 and new.metadata.schema_version == 2
    assert new.metadata.inspection is not None and new.metadata.calibration is not None
    assert new.threshold == old.threshold
    assert new.sealed and not old.sealed
    paths = sorted((mvtec / "test").rglob("*.png"))
    np.testing.assert_array_equal(score_paths(paths, old.metadata, old.infer), score_paths(paths, new.metadata, new.infer))
    again = invoke(train, "upgrade", tmp_path / "new.onnx", "--data", mvtec, "--out", tmp_path / "newer.onnx")
    assert again.exit_code == 2 and "already holds every frame statistic" in again.stderr


def test_upgrade_gives_a_schema_2_model_the_statistics_it_lacks_and_nothing_else(trained, mvtec, tmp_path):
    """A model exported before insightad measured what lies beside the part (``others``) cannot tell a second
    part in view; upgrade measures it on the images the model was trained on, and changes nothing else (the
    shipped screw model was brought up to date so)."""
    import dataclasses

    import onnx

    from insightad_train.export import save_sealed

    current = tmp_path / "current.onnx"
    assert invoke(train, "export", trained, "--out", current).exit_code == 0
    meta = Detector(current).metadata
    held = {k: v for k, v in meta.calibration.stats.items() if k != "others"}
    before = dataclasses.replace(meta, calibration=dataclasses.replace(meta.calibration, stats=held))
    save_sealed(onnx.load(str(current)), before, tmp_path / "before.onnx")
    other_data = tmp_path / "other"
    shutil.copytree(mvtec, other_data)
    (other_data / "train" / "good" / sorted((other_data / "train" / "good").iterdir())[0].name).unlink()
    refused = invoke(train, "upgrade", tmp_path / "before.onnx", "--data", other_data, "--out", tmp_path / "x.onnx")
    assert refused.exit_code == 2 and "trained on other good images" in refused.stderr
    done = invoke(train, "upgrade", tmp_path / "before.onnx", "--data", mvtec, "--out", tmp_path / "after.onnx")
    assert done.exit_code == 0 and "with others measured on" in done.output, done.output
    after = Detector(tmp_path / "after.onnx").metadata
    assert after == dataclasses.replace(before, calibration=meta.calibration)  # all else as it was
    assert any("second part in view goes unnoticed" in w for w in Detector(tmp_path / "before.onnx").warnings)
    assert not any("second part" in w for w in Detector(tmp_path / "after.onnx").warnings)


def test_the_chain_takes_names_that_are_not_utf8(mvtec, tmp_path):
    """Good images and a defect type named in Latin-1 (an older camera, a share mounted with another character
    set): fit refused the data (its fingerprint encoded the names as UTF-8), and evaluate ended at the histogram's
    label, after scoring every image. Both now take such names; the report writes them out (`kratzer_\\xfc`)."""
    import os

    data = tmp_path / "widget"
    shutil.copytree(mvtec, data)
    good = sorted((data / "train" / "good").iterdir())[0]
    good.rename(good.with_name(os.fsdecode(b"gut_\xe9.png")))
    for split in ("test", "ground_truth"):
        (data / split / "scratch").rename(data / split / os.fsdecode(b"kratzer_\xfc"))
    run, model = tmp_path / "run", tmp_path / "model.onnx"
    assert invoke(train, "fit", "--data", data, "--out", run, "--epochs", "1", *TINY).exit_code == 0
    assert invoke(train, "export", run, "--out", model).exit_code == 0
    result = invoke(train, "evaluate", model, "--data", data, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "kratzer_\\xfc" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "report" / "histograms.png").is_file()


def test_a_checkpoint_the_disk_cannot_take_ends_fit_in_one_line_and_leaves_nothing_half_written(mvtec, tmp_path):
    """On a full disk torch's writer raises its own RuntimeError (``unexpected pos 2606592 vs 2606480``): fit ended in
    a traceback and left checkpoint.partial behind. A file-size limit (what a full disk does to a write, without
    filling one) now ends it in one line, exit 1, with nothing half written."""
    import resource
    import signal
    import subprocess
    import sys

    def small_files() -> None:  # in the child: writes past 64 KB fail (EFBIG) instead of killing it (SIGXFSZ)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "insightad_train.cli", "fit", "--data", str(mvtec), "--out", str(run),
                           "--epochs", "1", "--arch", "bottleneck", *TINY], preexec_fn=small_files,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: could not write {run / 'checkpoint.pt'}") and "Traceback" not in done.stderr, done.stderr
    assert not list(run.glob("*.partial"))


def test_training_that_diverges_stops_at_once_and_says_what_to_change(mvtec, tmp_path):
    """A learning rate far too high gave NaN from the first batch: fit trained every epoch on NaN and failed only
    at calibration, with an error about the anomaly map. It now stops after the epoch whose loss is not finite.
    A negative seed, which numpy refused as "expected non-negative integer", is refused as the option it is."""
    done = invoke(train, "fit", "--data", mvtec, "--out", tmp_path / "run", "--epochs", "5", "--arch", "bottleneck",
                  "--learning-rate", "1e9", *TINY)
    assert done.exit_code == 3 and "training diverged: the loss is nan after epoch 1" in done.stderr, done.output
    assert "smaller --learning-rate" in done.stderr
    negative = invoke(train, "fit", "--data", mvtec, "--out", tmp_path / "run2", "--seed", "-1", *TINY)
    assert negative.exit_code == 2 and "'--seed'" in negative.stderr
