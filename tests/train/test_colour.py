"""Colour end to end: a defect that differs only in hue is invisible to a gray model and plain to a colour one."""
import json

import cv2
import numpy as np
from click.testing import CliRunner

from insightad_edge import Detector
from insightad_train.cli import main as train
from synthetic import DEFECT_BGR, PART_BGR, colour_part_image, write_colour_mvtec


def test_the_stain_has_the_parts_gray_level():
    gray = [cv2.cvtColor(np.uint8([[c]]), cv2.COLOR_BGR2GRAY)[0, 0] for c in (PART_BGR, DEFECT_BGR)]
    assert abs(int(gray[0]) - int(gray[1])) <= 1


def test_colour_is_chosen_by_the_data_and_finds_a_hue_only_defect(tmp_path):
    data = write_colour_mvtec(tmp_path / "parts", np.random.default_rng(0))
    aurocs = {}
    for colour in ("gray", "auto"):
        run = tmp_path / colour
        fit = CliRunner().invoke(train, ["fit", "--data", str(data), "--out", str(run), "--epochs", "8",
                                         "--image-size", "48", "--batch-size", "6", "--colour", colour, "--device", "cpu"])
        assert fit.exit_code == 0, fit.output
        export = CliRunner().invoke(train, ["export", str(run), "--out", str(tmp_path / f"{colour}.onnx")])
        assert export.exit_code == 0, export.output
        report = tmp_path / f"{colour}-report"
        assert CliRunner().invoke(train, ["evaluate", str(tmp_path / f"{colour}.onnx"), "--data", str(data),
                                          "--out", str(report)]).exit_code == 0
        aurocs[colour] = json.loads((report / "report.json").read_text())["image_auroc"]["equalised_scale"]
    detector = Detector(tmp_path / "auto.onnx")
    assert detector.metadata.preprocess.channels == 3 and Detector(tmp_path / "gray.onnx").metadata.preprocess.channels == 1
    stained = colour_part_image(np.random.default_rng(5), 64, defect=True)[0]
    assert detector(stained).status in ("ok", "defect")  # a BGR frame straight from OpenCV
    gray = cv2.cvtColor(stained, cv2.COLOR_BGR2GRAY)  # the stain has the part's gray level: gray, it would pass
    for frame in (gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)):  # a gray image, a colour camera in mono mode
        result = detector(frame, not_inspectable="report")
        assert result.status == "not_inspectable" and "has none" in result.reason
    assert aurocs["auto"] >= 0.9 and aurocs["gray"] <= 0.75, aurocs


def test_sensor_noise_in_a_dark_gray_scene_is_not_colour():
    """Per-channel noise is chroma, but not colour: a dark gray scene stays gray, a colour part stays colour."""
    from insightad_train.fit import choose_channels

    rng = np.random.default_rng(0)

    def dark_scene() -> np.ndarray:  # a dark part on a dark background (gray levels 5 and 19), noise 2 levels a channel
        scene = np.full((256, 256), 19.0)
        cv2.circle(scene, (128 + int(rng.integers(-20, 20)), 128), 45, 5.0, -1)
        return np.clip((scene[..., None] + rng.normal(0, 2, (256, 256, 3))) / 255, 0, 1).astype(np.float32)

    def colour_part() -> np.ndarray:
        return cv2.resize(colour_part_image(rng, 64)[0], (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255

    assert choose_channels([dark_scene() for _ in range(12)], "auto")[0] == 1
    assert choose_channels([colour_part() for _ in range(12)], "auto")[0] == 3


def test_gray_images_among_colour_ones_are_named(tmp_path, caplog):
    """A colour model refuses gray frames at the edge: gray training images mixed in are a data mistake, said."""
    from insightad_train.config import FitConfig
    from insightad_train.fit import choose_preprocess

    rng = np.random.default_rng(9)
    paths = []
    for i in range(16):
        image = colour_part_image(rng, 64)[0]
        paths.append(tmp_path / f"{i:02d}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if i % 4 == 0 else image)
    spec, _ = choose_preprocess(FitConfig(data=str(tmp_path), image_size=32), paths)
    assert spec.channels == 3 and "4 of the 16 training images are gray" in caplog.text
