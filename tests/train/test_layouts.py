"""The MVTec family's other layouts (3D-AD, LOCO) are read as they come, masks and good-only validation included."""
import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from insightad_edge.metadata import ModelMetadata
from insightad_train.cli import main as train
from insightad_train.data import load_dataset, read_mask
from synthetic import write_mvtec


def as_3d_ad(mvtec, root):
    """MVTec 3D-AD: <split>/<type>/rgb/*.png with masks in <split>/<type>/gt/, depth in xyz/ (left empty here)."""
    for split in ("train", "test"):
        for type_dir in sorted((mvtec / split).iterdir()):
            target = root / split / type_dir.name
            shutil.copytree(type_dir, target / "rgb")
            (target / "xyz").mkdir()
            masks = mvtec / "ground_truth" / type_dir.name
            if masks.is_dir():
                (target / "gt").mkdir()
                for mask in masks.iterdir():
                    shutil.copy(mask, target / "gt" / mask.name.replace("_mask", ""))
    shutil.copytree(root / "train" / "good", root / "validation" / "good")  # 3D-AD ships good-only validation
    return root


def as_loco(mvtec, root):
    """MVTec LOCO: test/<type>/*.png, ground_truth/<type>/<name>/000.png, 001.png ... one mask per anomaly."""
    shutil.copytree(mvtec / "train", root / "train")
    shutil.copytree(mvtec / "test", root / "test")
    for mask in (mvtec / "ground_truth" / "scratch").iterdir():
        folder = root / "ground_truth" / "scratch" / mask.name.replace("_mask.png", "")
        folder.mkdir(parents=True)
        pixels = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
        top, bottom = pixels.copy(), pixels.copy()
        top[pixels.shape[0] // 2:], bottom[:pixels.shape[0] // 2] = 0, 0
        cv2.imwrite(str(folder / "000.png"), top)
        cv2.imwrite(str(folder / "001.png"), bottom)
    return root


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    mvtec = write_mvtec(base / "mvtec", np.random.default_rng(3))
    return {"mvtec": mvtec, "3d-ad": as_3d_ad(mvtec, base / "3d"), "loco": as_loco(mvtec, base / "loco")}


def test_a_copy_made_on_a_mac_or_kept_on_a_nas_reads_as_the_original(layouts, tmp_path):
    """A dataset copied by a Mac holds a `._name.png` (not an image) beside each picture, which fit refused as
    unreadable; one kept on a Synology share holds `@eaDir` thumbnail folders, read as a defect type."""
    reference = load_dataset(layouts["mvtec"])
    copy = shutil.copytree(layouts["mvtec"], tmp_path / "copy")
    for image in list(copy.rglob("*.png")):
        (image.parent / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07" + bytes(4000))
    shutil.copytree(copy / "test" / "scratch", copy / "test" / "@eaDir")
    other = load_dataset(copy)
    assert [p.name for p in other.train] == [p.name for p in reference.train]
    assert [(s.path.name, s.defect) for s in other.test] == [(s.path.name, s.defect) for s in reference.test]


@pytest.mark.parametrize("layout", ["3d-ad", "loco"])
def test_the_same_images_and_masks_as_the_mvtec_ad_layout(layouts, layout):
    reference, other = load_dataset(layouts["mvtec"]), load_dataset(layouts[layout])
    assert [p.name for p in other.train] == [p.name for p in reference.train]
    assert [(s.path.name, s.defect) for s in other.test] == [(s.path.name, s.defect) for s in reference.test]
    for mine, theirs in zip(other.test, reference.test):
        assert (mine.mask is None) == (theirs.mask is None)
        if mine.mask is not None:  # LOCO: the union of the two half masks is the whole mask
            assert np.array_equal(read_mask(mine.mask), read_mask(theirs.mask)) and read_mask(mine.mask).any()


def test_fit_and_evaluate_on_a_3d_ad_folder_use_its_good_validation_images_to_calibrate(layouts, tmp_path):
    data, run = layouts["3d-ad"], tmp_path / "run"
    tiny = ["--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--arch", "bottleneck"]
    fitted = CliRunner().invoke(train, ["fit", "--data", str(data), "--out", str(run), *tiny], catch_exceptions=False)
    assert fitted.exit_code == 0, fitted.output
    metadata = ModelMetadata.from_json((run / "metadata.json").read_text())
    held_back = len(json.loads((run / "holdout.json").read_text()))
    assert metadata.threshold.n_good == held_back + len(load_dataset(data).validation)
    evaluated = CliRunner().invoke(train, ["evaluate", str(run), "--data", str(data), "--out", str(tmp_path / "r")],
                                   catch_exceptions=False)
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["pixel_auroc"] is not None and report["from_the_defects"]["peaks_in_defect"] is not None


def test_a_defective_part_filed_among_the_good_ones_is_named_when_it_sets_the_threshold(tmp_path, caplog):
    """A scratched part among the good validation images scores far above every good one; the 99th percentile
    of a few dozen scores is their largest, so it alone would set the threshold: fit names it."""
    data = write_mvtec(tmp_path / "data", np.random.default_rng(5))
    (data / "validation" / "good").mkdir(parents=True)
    for image in sorted((data / "train" / "good").iterdir())[:12]:
        shutil.copy(image, data / "validation" / "good" / image.name)
    shutil.copy(sorted((data / "test" / "scratch").iterdir())[0], data / "validation" / "good" / "filed_as_good.png")
    tiny = ["--image-size", "64", "--device", "cpu", "--arch", "patchknn"]
    fitted = CliRunner().invoke(train, ["fit", "--data", str(data), "--out", str(tmp_path / "run"), *tiny])
    assert fitted.exit_code == 0, fitted.output
    assert "filed_as_good.png sets the threshold alone" in caplog.text, caplog.text
    metadata = ModelMetadata.from_json((tmp_path / "run" / "metadata.json").read_text())
    assert metadata.threshold.value > sorted(metadata.calibration.score)[-2]  # it did: above every other held-back score
    assert any("rests on one held-back good image" in w for w in metadata.warnings)  # and the model says so wherever it runs


def test_validation_defects_set_the_threshold_against_every_good_image_never_trained_on(tmp_path):
    """Youden's J weighs the validation defects against the held-back good images and the validation's good ones
    (the held-back ones were left out: the good parts' highest scores, which the threshold must clear, were
    known from fewer images), and sets the threshold midway in the gap it finds."""
    from pathlib import Path

    from insightad_train.calibrate import score_paths
    from insightad_train.fit import TorchInfer, load_run

    data = write_mvtec(tmp_path / "data", np.random.default_rng(6))
    for kind in ("good", "scratch"):
        (data / "validation" / kind).mkdir(parents=True)
        for image in sorted((data / "test" / kind).iterdir())[:4]:
            shutil.move(image, data / "validation" / kind / image.name)
    run = tmp_path / "run"
    fitted = CliRunner().invoke(train, ["fit", "--data", str(data), "--out", str(run), "--image-size", "64",
                                        "--device", "cpu", "--arch", "patchknn"])
    assert fitted.exit_code == 0, fitted.output
    threshold = ModelMetadata.from_json((run / "metadata.json").read_text()).threshold
    held_back = [Path(p) for p in json.loads((run / "holdout.json").read_text())]
    assert threshold.method == "youden" and threshold.n_good == len(held_back) + 4 and threshold.n_defect == 4
    mapper, metadata = load_run(run)
    infer = TorchInfer(mapper, "cpu")
    good = score_paths(held_back + sorted((data / "validation" / "good").iterdir()), metadata, infer)
    defects = score_paths(sorted((data / "validation" / "scratch").iterdir()), metadata, infer)
    assert good.max() < threshold.value < defects.min()
    assert threshold.value == pytest.approx((good.max() + defects.min()) / 2)


def test_validation_defects_the_model_cannot_tell_from_good_ones_leave_no_infinite_threshold(tmp_path, caplog):
    """With a validation split that has defects the threshold is Youden's; when no threshold there flags more of the
    defects than of the good images (here the "defects" are the good images again, filed wrongly), Youden's cut was
    infinite: every part on the line passed. The held-back good images set it instead, and fit says why."""
    data = write_mvtec(tmp_path / "data", np.random.default_rng(5))
    for folder in ("good", "scratch"):
        (data / "validation" / folder).mkdir(parents=True)
        for image in sorted((data / "train" / "good").iterdir())[:12]:
            shutil.copy(image, data / "validation" / folder / image.name)
    tiny = ["--image-size", "64", "--device", "cpu", "--arch", "patchknn"]
    fitted = CliRunner().invoke(train, ["fit", "--data", str(data), "--out", str(tmp_path / "run"), *tiny])
    assert fitted.exit_code == 0, fitted.output
    metadata = ModelMetadata.from_json((tmp_path / "run" / "metadata.json").read_text())
    assert metadata.threshold.method == "quantile" and metadata.threshold.value < 1e6
    assert "scores the 12 defective validation images no higher than the 22 good ones never trained on" in caplog.text
    assert metadata.threshold.n_good == 22  # the 10 held back and the 12 good validation images


def test_a_folder_of_copies_is_refused_and_a_few_copies_are_named(tmp_path, caplog):
    """Forty copies of one picture are one good image: the model would learn nothing of how good parts vary."""
    from insightad_train.fit import refuse_copies
    from synthetic import part_image

    folder = tmp_path / "good"
    folder.mkdir()
    rng = np.random.default_rng(3)
    first = part_image(rng, 64)[0]
    for i in range(40):
        cv2.imwrite(str(folder / f"{i:03d}.png"), first)
    result = CliRunner().invoke(train, ["fit", "--data", str(folder), "--out", str(tmp_path / "run")])
    assert result.exit_code == 3 and "only 1 different pictures (39 are exact copies" in result.output
    for i in range(1, 36):  # 36 different pictures and 4 copies: enough, and said
        cv2.imwrite(str(folder / f"{i:03d}.png"), part_image(rng, 64)[0])
    refuse_copies(tuple(sorted(folder.iterdir())))
    assert "4 of the 40 good images are exact copies" in caplog.text


def test_unreadable_good_images_are_named_before_any_training(tmp_path, caplog):
    """A corrupt file among the good images used to end a fit at calibration, after its epochs, naming only the
    first; now every one that does not decode is named before the first epoch, to take out or replace (and files
    not named as images are named as skipped)."""
    from synthetic import corrupt_header_bmp, part_image

    folder = tmp_path / "good"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(30):
        cv2.imwrite(str(folder / f"{i:03d}.png"), part_image(rng, 64)[0])
    (folder / "damaged.bmp").write_bytes(corrupt_header_bmp())
    (folder / "cut.png").write_bytes((folder / "000.png").read_bytes()[:100])
    (folder / "0031").write_bytes((folder / "000.png").read_bytes())  # a camera that writes no suffix
    (folder / "2026-11-30").mkdir()  # and a day's folder of more good images
    (folder / "2026-11-30" / "100.png").write_bytes((folder / "001.png").read_bytes())
    for command in (["fit", "--epochs", "1", "--arch", "seed", "--image-size", "32"], ["augment"]):
        result = CliRunner().invoke(train, [*command, "--data", str(folder), "--out", str(tmp_path / command[0])])
        assert result.exit_code == 3 and "2 of the 32 good images cannot be used" in result.output, result.output
        assert "damaged.bmp is not a readable image" in result.output and "cut.png is not a readable" in result.output
        assert not any((tmp_path / command[0]).iterdir())  # nothing trained, nothing written
    assert "skipped among the good images: files not named as images: no suffix (0031)" in caplog.text
    assert "skipped among the good images: subfolders holding images, which are not read: 2026-11-30" in caplog.text


def test_a_frame_without_a_part_among_the_good_images_is_named(tmp_path, caplog):
    """An empty fixture filed as good: a flat one (nothing in it) ended the fit unnamed, and is refused by name;
    one in sensor noise widened the inspection limits until empty fixtures were judged, in silence, and is named
    (kept: the same check finds a rare good part, one of 40 screws touching the frame's edge)."""
    from synthetic import background, part_image

    folder = tmp_path / "good"
    folder.mkdir()
    rng = np.random.default_rng(6)
    for i in range(30):
        cv2.imwrite(str(folder / f"{i:03d}.png"), part_image(rng, 64)[0])
    cv2.imwrite(str(folder / "flat.png"), np.full((64, 64), 3, np.uint8))
    tiny = ["--epochs", "1", "--arch", "bottleneck", "--image-size", "32", "--data", str(folder)]
    result = CliRunner().invoke(train, ["fit", *tiny, "--out", str(tmp_path / "refused")])
    assert result.exit_code == 3 and "1 of the 31 good images cannot be used" in result.output, result.output
    assert "flat.png shows no part (no part found in the image: the frame looks empty)" in result.output
    (folder / "flat.png").unlink()
    cv2.imwrite(str(folder / "empty.png"), background(rng, 64, 64))
    assert CliRunner().invoke(train, ["fit", *tiny, "--out", str(tmp_path / "run")]).exit_code == 0
    assert "1 of the 31 good images would get no verdict from a model whose limits came from the others" in caplog.text
    assert "empty.png (" in caplog.text


def test_good_images_in_subfolders_of_a_plain_folder_are_named_not_silently_missing(tmp_path):
    """A camera that files its pictures by day: the refusal says where they are and what is read."""
    from insightad_train.data import DataError

    for day in ("2026-11-01", "2026-11-02"):
        (tmp_path / day).mkdir()
        cv2.imwrite(str(tmp_path / day / "part.png"), np.full((64, 64), 128, np.uint8))
    with pytest.raises(DataError, match="its subfolders 2026-11-01, 2026-11-02 are not read"):
        load_dataset(tmp_path)
