"""The default recipe on parts it was never tuned on: it checks its own choices on the training images."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from insightad_edge import Detector
from insightad_train.cli import main as train
from synthetic import embed, part_image, write_banded_mvtec, write_tread_mvtec

TINY = ["--epochs", "6", "--image-size", "64", "--batch-size", "8", "--device", "cpu"]


def fit_and_evaluate(data, tmp_path, *extra):
    run = tmp_path / "run"
    done = CliRunner().invoke(train, ["-v", "fit", "--data", str(data), "--out", str(run), *TINY, *extra])
    assert done.exit_code == 0, done.output
    assert CliRunner().invoke(train, ["export", str(run), "--out", str(tmp_path / "m.onnx")]).exit_code == 0
    assert CliRunner().invoke(train, ["evaluate", str(tmp_path / "m.onnx"), "--data", str(data),
                                      "--out", str(tmp_path / "report")]).exit_code == 0
    return done, json.loads((tmp_path / "report" / "report.json").read_text()), Detector(tmp_path / "m.onnx")


def test_a_turning_tread_is_not_aligned_on_noise(tmp_path):
    """The tread's stripes split the part into many blobs: alignment would follow them, so none is chosen,
    and the model sees the region where the part lies (a portrait crop holding all of it), not the background."""
    data = write_tread_mvtec(tmp_path / "tread", np.random.default_rng(0))
    done, report, detector = fit_and_evaluate(data, tmp_path)
    spec = detector.metadata.preprocess
    assert spec.align == "none" and "no single clear part" in done.stderr
    assert spec.frame_size == (96, 72) and spec.crop[0] * spec.crop[1] < 0.7 * 96 / 72
    (left, right), (top, bottom) = ((72 * (offset + (side - crop) / 2), 72 * (offset + (side + crop) / 2))
                                    for offset, side, crop in zip(spec.crop_offset, (1.0, 96 / 72), spec.crop))
    assert left <= 0.3 * 72 and right >= 0.7 * 72 and top <= 0.12 * 96 and bottom >= 0.88 * 96  # the part, whole
    assert spec.input_size[0] > spec.input_size[1]  # a portrait input for a portrait frame
    assert detector.metadata.arch == "patchknn"  # an autoencoder cannot redraw a tread at random phase (AUROC 0.48)
    assert report["image_auroc"]["equalised_scale"] >= 0.95, report["image_auroc"]  # 1.00 measured


def test_a_bright_band_on_a_dim_part_keeps_the_whole_part_in_view(tmp_path):
    """The first held-out category's failure: the band is one clear blob, and centring on it makes the crops
    agree, but a crop around it leaves out the part's plain thirds, where the cuts are. The background model
    sees the whole part, so the model sees the whole frame; forced to centre, the crop is blind to the cuts."""
    data = write_banded_mvtec(tmp_path / "banded", np.random.default_rng(0))
    done, report, detector = fit_and_evaluate(data, tmp_path / "auto")
    assert detector.metadata.preprocess.align == "none" and "a piece of what stands out" in done.stderr
    assert report["image_auroc"]["equalised_scale"] >= 0.95, report["image_auroc"]  # 1.00 measured
    done, report, detector = fit_and_evaluate(data, tmp_path / "centred", "--align", "center")
    assert max(detector.metadata.preprocess.crop) < 0.5  # the band alone: a third of the part
    assert report["image_auroc"]["equalised_scale"] < 0.75, report["image_auroc"]  # 0.53 measured


def test_an_elongated_part_is_rotated_only_because_it_helps(tmp_path):
    from synthetic import write_mvtec

    data = write_mvtec(tmp_path / "parts", np.random.default_rng(1), size=96)
    done, report, detector = fit_and_evaluate(data, tmp_path)
    assert detector.metadata.preprocess.align == "center_rotate"
    assert "pixel spread across the training images" in done.stderr
    assert report["image_auroc"]["equalised_scale"] >= 0.95, report["image_auroc"]  # 1.00 measured
    for seed in range(2, 8):  # the same camera with a wider view: the same part scores the same
        rng = np.random.default_rng(seed)
        part = part_image(rng, 96)[0]
        original, wide = detector(part), detector(embed(part, rng, 96, 160))
        assert wide.score == pytest.approx(original.score, rel=0.1), seed


def test_a_patch_scorer_sees_what_lies_around_each_patch(tmp_path):
    """A logical anomaly: each mark looks right on its own and is wrong only beside the other. The patch
    scorer's surroundings (twice a patch's extent) see the pair; without them (--context 0) it cannot."""
    from synthetic import write_paired_mvtec

    data = write_paired_mvtec(tmp_path / "paired", np.random.default_rng(0))
    aurocs = {}
    for context in ("0.5", "0"):
        _, report, detector = fit_and_evaluate(data, tmp_path / context, "--arch", "patchknn", "--align", "none",
                                               "--context", context)
        aurocs[context] = report["image_auroc"]["equalised_scale"]
    assert detector.metadata.arch == "patchknn" and detector.metadata.preprocess.input_size == (64, 64)
    assert aurocs["0.5"] >= 0.9 and aurocs["0"] <= 0.7, aurocs


def woven_strip(rng: np.random.Generator, width: int, height: int, hole: bool = False) -> np.ndarray:
    """A strip of woven cloth as a line-scan camera gives it, many times as long as it is wide; ``hole``: a dark
    spot in it, at a place of its own."""
    x, y = np.arange(width)[None, :] + rng.uniform(0, 16), np.arange(height)[:, None] + rng.uniform(0, 16)
    strip = 128 + 40 * np.sin(2 * np.pi * x / 16) * np.sin(2 * np.pi * y / 16) + rng.normal(0, 4, (height, width))
    if hole:
        left = int(rng.integers(0, width - height // 2))
        strip[height // 3:height // 3 + height // 4, left:left + height // 4] = 30
    return np.clip(strip, 0, 255).astype(np.uint8)


def test_a_line_scan_cameras_long_strip_is_taken_whole(tmp_path):
    """A line-scan camera (cloth, paper, sheet metal on a web) gives strips many times as long as they are wide: a
    fit on 16:1 strips trained for its minutes and then stopped at the model's contract (its crop might span 4
    frame widths at most). Strips up to 64:1 are taken whole, each keeping its aspect; a longer one is refused
    before the first epoch, saying how to cut it."""
    rng = np.random.default_rng(43)
    good = tmp_path / "cloth"
    good.mkdir()
    for i in range(32):
        cv2.imwrite(str(good / f"{i:03d}.png"), woven_strip(rng, 1024, 64))
    run = tmp_path / "run"
    done = CliRunner().invoke(train, ["fit", "--data", str(good), "--out", str(run), "--arch", "patchknn", *TINY])
    assert done.exit_code == 0, done.output
    assert CliRunner().invoke(train, ["export", str(run), "--out", str(tmp_path / "m.onnx")]).exit_code == 0
    detector = Detector(tmp_path / "m.onnx")
    height, width = detector.metadata.preprocess.input_size
    assert width == 16 * height  # the strip's own aspect
    assert [detector(woven_strip(rng, 1024, 64, hole)).status for hole in (False, False, True, True)] == [
        "ok", "ok", "defect", "defect"]
    longer = tmp_path / "longer"
    longer.mkdir()
    for i in range(32):
        cv2.imwrite(str(longer / f"{i:03d}.png"), woven_strip(rng, 2048, 16))
    refused = CliRunner().invoke(train, ["fit", "--data", str(longer), "--out", str(tmp_path / "run2"), *TINY])
    assert refused.exit_code == 3 and "128 times as long as they are wide" in refused.output
    assert not (tmp_path / "run2" / "history.json").exists()  # before the first epoch
