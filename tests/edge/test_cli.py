import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from insightad_edge import Detector, NotInspectable, __version__
from insightad_edge.cli import main
from synthetic import part_image


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(11)
    root = tmp_path / "parts"
    (root / "sub").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(root / f"good_{i}.png"), part_image(rng, 128)[0])
    cv2.imwrite(str(root / "sub" / "deep.png"), part_image(rng, 128)[0])
    (root / "notes.txt").write_text("not an image, skipped")
    return root


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_jsonl_has_exactly_the_contract_keys(folder, model_path):
    result = run("score", folder, "--model", model_path, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert list(row) == ["path", "score", "threshold", "anomaly", "error"]
        assert isinstance(row["score"], float) and isinstance(row["anomaly"], bool) and row["error"] is None


def test_recursive_csv_and_output_file(folder, model_path, tmp_path):
    out = tmp_path / "rows.csv"
    result = run("score", folder, "--model", model_path, "--recursive", "--format", "csv", "--output", out)
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 4 and any(r["path"].endswith("deep.png") for r in rows)


def test_rows_are_never_written_over_a_picture(folder, model_path):
    """`score FOLDER --output FOLDER/good_1.png` (a mistyped path) wrote the rows over a part's picture, and
    `score a.png --output a.png` over the very image it scored: the part's record was gone."""
    picture = folder / "good_1.png"
    before = picture.read_bytes()
    for target in (folder, picture):
        refused = run("score", target, "--model", model_path, "--format", "csv", "--output", picture)
        assert refused.exit_code == 2 and "named as a picture" in refused.stderr, refused.output
    assert picture.read_bytes() == before


def test_unreadable_image_gets_a_row_and_exit_code_1(folder, model_path):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run("score", folder, "--model", model_path, "--format", "jsonl")
    assert result.exit_code == 1
    rows = {json.loads(line)["path"].split("/")[-1]: json.loads(line) for line in result.stdout.splitlines()}
    assert len(rows) == 4
    assert rows["broken.png"]["score"] is None and "not a readable image" in rows["broken.png"]["error"]
    assert rows["good_0.png"]["error"] is None
    assert "4 images: 3 judged, 0 defects, 0 not inspectable, 1 errors" in result.stderr
    assert "IHDR" not in result.stderr  # OpenCV's own warning stays out of the output


def test_table_and_threshold_override(folder, model_path):
    result = run("score", folder, "--model", model_path, "--threshold", "0")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["path", "score", "threshold", "verdict"]
    assert all("ANOMALY" in line for line in lines[1:])


@pytest.mark.parametrize("value", ["nan", "-inf"])
def test_a_number_option_refuses_nan_and_infinity(folder, model_path, value):
    """NaN slips past click's ranges (no comparison with it is true), and nothing scores above a NaN threshold."""
    result = run("score", folder, "--model", model_path, "--threshold", value)
    assert result.exit_code == 2 and "is not a finite number" in result.stderr


def test_a_detector_refuses_a_threshold_that_is_not_a_number(model_path):
    from insightad_edge import Detector

    with pytest.raises(ValueError, match="not a finite number"):
        Detector(model_path, threshold=float("nan"))


def test_save_maps_writes_one_overlay_per_image(folder, model_path, tmp_path):
    maps = tmp_path / "maps"
    result = run("score", folder, "--model", model_path, "--recursive", "--save-maps", maps)
    assert result.exit_code == 0
    written = sorted(p.relative_to(maps).as_posix() for p in maps.rglob("*.png"))
    assert written == ["good_0.png", "good_1.png", "good_2.png", "sub/deep.png"]
    overlay = cv2.imread(str(maps / "good_0.png"))
    assert overlay.shape == (128, 128, 3)


def test_a_colour_models_overlays_show_the_part_in_its_colours(model_path, tmp_path):
    """`score --save-maps` with a colour model gave every row an OpenCV error (the overlay took a gray picture)
    and wrote none; and an overlay in gray would hide the stain of the wrong colour it is there to show."""
    import dataclasses

    from models import calibrated, v1_metadata
    from synthetic import colour_part_image

    rng = np.random.default_rng(5)
    base = v1_metadata()
    spec = dataclasses.replace(base.preprocess, channels=3, frame_size=(96, 96), align="center", crop=(0.8, 0.8),
                               input_size=(64, 64))
    model = calibrated(tmp_path / "colour.onnx", dataclasses.replace(base, preprocess=spec),
                       [colour_part_image(rng)[0] for _ in range(30)])
    parts = tmp_path / "parts"
    parts.mkdir()
    stained, stain = colour_part_image(rng, defect=True)
    cv2.imwrite(str(parts / "stained.png"), stained)
    result = run("score", parts, "--model", model, "--save-maps", tmp_path / "maps", "--format", "jsonl")
    row = json.loads(result.stdout)
    assert result.exit_code == 0 and row["error"] is None and row["score"] is not None
    overlay = cv2.imread(str(tmp_path / "maps" / "stained.png")).astype(int)
    assert np.abs(overlay[stain > 0] - stained[stain > 0]).mean() < 40  # the blue stain, seen blue
    assert (overlay[stain > 0, 0] > overlay[stain > 0, 2]).mean() > 0.9


def test_a_12_bit_cameras_frame_in_16_bits_is_refused_as_dark_and_says_so(folder, model_path, tmp_path):
    """A Mono12 camera's frames come as uint16 arrays (GenICam libraries, some viewers' files) whose values reach
    4095: read as 16 bits they are 16 times darker than the scene. Refused as too dark, as before, but the reason
    no longer only sends the operator to the lamps."""
    part = part_image(np.random.default_rng(3), 128)[0]
    cv2.imwrite(str(tmp_path / "mono12.png"), part.astype(np.uint16) * 16)
    cv2.imwrite(str(tmp_path / "dim.png"), (part * 0.3).astype(np.uint8))  # 8 bits, dark indeed: no such words
    rows = {Path(row["path"]).name: row for row in map(json.loads, run(
        "score", tmp_path, "--model", model_path, "--format", "jsonl").stdout.splitlines())}
    assert "too dark" in rows["mono12.png"]["error"] and "too dark" in rows["dim.png"]["error"]
    assert "12-bit camera's frame in 16 bits" in rows["mono12.png"]["error"] and "frame << 4" in rows["mono12.png"]["error"]
    assert "bit" not in rows["dim.png"]["error"]
    detector = Detector(model_path)
    assert detector(part.astype(np.uint16) * 16 << 4).status == "ok"  # as the reason says: judged
    assert detector(part.astype(np.uint16) * 257).status == "ok"      # a true 16-bit frame: no words needed
    with pytest.raises(NotInspectable, match="12-bit camera"):
        detector(part.astype(np.uint16) * 16)


def test_save_maps_never_writes_over_the_images_it_scores(folder, model_path):
    before = {p: p.read_bytes() for p in folder.rglob("*.png")}
    for args in ([folder, "--save-maps", folder], [folder, "--recursive", "--save-maps", folder / "sub" / "maps"],
                 [folder / "good_0.png", "--save-maps", folder]):
        result = run("score", *args, "--model", model_path)
        assert result.exit_code == 2 and "overwrite" in result.stderr, result.output
    assert {p: p.read_bytes() for p in folder.rglob("*.png")} == before


def test_a_maps_folder_that_cannot_be_made_stops_the_run_before_it_scores(folder, model_path, tmp_path):
    """Found out at the first overlay, it put an error in every row of a run that said 0 errors and exit 0."""
    (tmp_path / "a_file").write_text("not a folder")
    result = run("score", folder, "--model", model_path, "--save-maps", tmp_path / "a_file" / "maps")
    assert result.exit_code == 2 and "cannot make folder" in result.stderr and result.stdout == ""


def test_an_overlay_that_cannot_be_written_keeps_its_verdict_and_fails_the_run(folder, model_path, tmp_path):
    """One overlay fails mid-run (a file stands where its subfolder goes, as a full disk refuses a write): its row
    keeps the verdict and says what is missing, the others are written, and the run says so and exits 1."""
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "sub").write_text("not a folder")
    result = run("score", folder, "--model", model_path, "--recursive", "--save-maps", maps, "--format", "jsonl")
    rows = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert result.exit_code == 1 and "1 overlays not written" in result.stderr
    assert rows["deep.png"]["error"].startswith("overlay not written") and rows["deep.png"]["anomaly"] is False
    assert all(rows[f"good_{i}.png"]["error"] is None and (maps / f"good_{i}.png").is_file() for i in range(3))


def test_images_that_share_a_name_keep_an_overlay_each(folder, model_path, tmp_path):
    cv2.imwrite(str(folder / "good_0.jpg"), cv2.imread(str(folder / "good_1.png")))
    maps = tmp_path / "maps"
    assert run("score", folder, "--model", model_path, "--save-maps", maps).exit_code == 0
    assert sorted(p.name for p in maps.iterdir()) == ["good_0.jpg.png", "good_0.png.png", "good_1.png", "good_2.png"]
    assert not np.array_equal(cv2.imread(str(maps / "good_0.jpg.png")), cv2.imread(str(maps / "good_0.png.png")))


def test_usage_errors_exit_2_and_model_errors_exit_3(folder, model_path, tmp_path):
    assert run("score", tmp_path / "nowhere").exit_code == 2
    assert run("score", folder, "--format", "xml").exit_code == 2
    lfs = tmp_path / "m.onnx"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\n")
    result = run("score", folder, "--model", lfs)
    assert result.exit_code == 3 and "git lfs pull" in result.stderr and "Traceback" not in result.output
    damaged = tmp_path / "damaged.onnx"
    shipped = bytearray(Detector().path.read_bytes())
    shipped[len(shipped) // 2] ^= 1  # one bit of one weight
    damaged.write_bytes(shipped)
    result = run("score", folder, "--model", damaged)
    assert result.exit_code == 3 and "damaged" in result.stderr and "Traceback" not in result.output


def test_rows_that_cannot_be_written_end_the_run_with_the_reason_not_a_traceback(folder, model_path):
    """A full disk (/dev/full) under --output, or the reader of stdout gone (score | head): exit 1, saying how far
    it got; with nobody taking the rows, no more images are scored."""
    full = run("score", folder, "--model", model_path, "--output", "/dev/full")
    assert full.exit_code == 1 and "could not write the rows to /dev/full (No space left on device)" in full.stderr
    process = subprocess.Popen([sys.executable, "-m", "insightad_edge.cli", "score", str(folder), "--model",
                                str(model_path), "--format", "jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    process.stdout.close()  # the reader is gone before the first row
    err = process.stderr.read()
    assert process.wait(timeout=60) == 1 and "(its reader has gone) after 0 of 3" in err and "Traceback" not in err
    with open("/dev/full", "w") as full_disk:  # every other command: one line and exit 1
        info = subprocess.run([sys.executable, "-m", "insightad_edge.cli", "info", str(model_path)], stdout=full_disk,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert info.returncode == 1 and info.stderr.strip().endswith("Error: No space left on device"), info.stderr


def test_files_not_named_as_images_are_skipped_and_their_kinds_named(folder, model_path, caplog):
    """A camera set to write `.raw`, or names without a suffix, must not look like a folder of few parts; a file
    manager's own files on a Windows share (Thumbs.db) are not parts and not named."""
    (folder / "0001").write_bytes((folder / "good_0.png").read_bytes())
    (folder / "Thumbs.db").write_bytes(b"\0" * 64)
    result = run("score", folder, "--model", model_path, "--format", "jsonl")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 3
    assert "skipped files not named as images: no suffix (0001), .txt (notes.txt)" in caplog.text
    assert "skipped subfolders holding images (--recursive scores them): sub" in caplog.text


def test_hidden_files_and_a_nass_own_folders_are_not_scored(folder, model_path, caplog):
    """A Mac's `._good_0.png` beside each picture (not an image) made an error row and exit 1; with --recursive,
    the thumbnails of a Synology share's `@eaDir` were scored as parts."""
    (folder / "._good_0.png").write_bytes(b"\x00\x05\x16\x07" + bytes(4000))
    (folder / "@eaDir" / "good_0.png").mkdir(parents=True)
    (folder / "@eaDir" / "good_0.png" / "SYNOFILE_THUMB_M.png").write_bytes((folder / "good_0.png").read_bytes())
    plain = run("score", folder, "--model", model_path, "--format", "jsonl")
    assert plain.exit_code == 0 and len(plain.stdout.splitlines()) == 3, plain.stdout
    assert "@eaDir" not in caplog.text
    scored = [json.loads(line)["path"] for line in run("score", folder, "--model", model_path, "--format", "jsonl",
                                                        "--recursive").stdout.splitlines()]
    assert not any("@eaDir" in path or "._" in path for path in scored) and len(scored) == 4, scored


def test_empty_folder_fails(tmp_path, model_path):
    assert run("score", tmp_path, "--model", model_path).exit_code == 1


def test_info_human_and_json(model_path):
    human = run("info", model_path)
    assert human.exit_code == 0 and "center_rotate" in human.stdout and "threshold" in human.stdout
    meta = json.loads(run("info", model_path, "--json").stdout)
    assert meta["schema_version"] == 2 and meta["category"] == "synthetic"
    assert "inspectable" in human.stdout and "sha256" in human.stdout


def test_version():
    assert __version__ in run("--version").stdout


LATIN1_NAME = os.fsdecode(b"pr\xfcfteil_\xe9.png")  # a camera's Latin-1 name, or a share mounted with another charset


def test_a_file_name_that_is_not_utf8_is_scored_and_written_out_readably(folder, model_path, tmp_path):
    """Such a name reaches Python with surrogates, which a strict UTF-8 stdout refuses (the usual locale, not this
    machine's C.UTF-8): the table and CSV ended in a traceback at that file, and --save-maps took the process
    down (OpenCV's writer crashes on the name: a segmentation fault, every row after it lost). They now write
    its odd bytes out, and its overlay; JSON Lines keeps the escaped name, which Python reads back to the file."""
    (folder / LATIN1_NAME).write_bytes(cv2.imencode(".png", part_image(np.random.default_rng(13), 128)[0])[1].tobytes())
    strict = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # errors="strict", as under en_US.UTF-8
    for fmt in ("table", "csv", "jsonl"):
        done = subprocess.run([sys.executable, "-m", "insightad_edge.cli", "score", str(folder), "--model",
                               str(model_path), "--format", fmt, "--save-maps", str(tmp_path / f"maps_{fmt}")],
                              capture_output=True, env=strict, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        assert cv2.imdecode(np.fromfile(tmp_path / f"maps_{fmt}" / LATIN1_NAME, np.uint8), cv2.IMREAD_COLOR) is not None
        out = done.stdout.decode("utf-8")  # valid UTF-8 throughout
        assert len(out.strip().splitlines()) == 4 + (fmt != "jsonl")  # four rows, under a header but in JSON Lines
        if fmt == "jsonl":
            paths = [json.loads(line)["path"] for line in out.splitlines()]
            assert Path(folder / LATIN1_NAME).is_file() and str(folder / LATIN1_NAME) in paths
        else:
            assert "pr\\xfcfteil_\\xe9.png" in out
