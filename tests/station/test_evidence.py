"""Evidence as a line keeps it: the frames behind the verdicts on a real disk, within a budget, whatever the disk
does (fills, hangs, is shared with the log, holds the user's own files)."""
import os
import time

import cv2
import numpy as np
from click.testing import CliRunner
from test_watch import rows_of, write_video

from insightad_edge import Detector
from insightad_edge.cli import main
from synthetic import part_image


def test_evidence_for_every_defect_and_the_budget_deletes_the_oldest_first(model_path, tmp_path):
    """... and only evidence: the user's own pictures in the same folder are neither counted nor deleted."""
    rng = np.random.default_rng(5)
    write_video(tmp_path / "line.avi", (part_image(rng, 128, defect=i % 2 == 1)[0] for i in range(12)))
    old_day = tmp_path / "evidence" / "2020-01-01"
    old_day.mkdir(parents=True)
    (old_day / "000000.000_0_defect.png").write_bytes(b"x" * 200_000)
    theirs = [tmp_path / "evidence" / "archive" / "part.png", tmp_path / "evidence" / "reference.png"]
    theirs[0].parent.mkdir()
    for path in theirs:
        path.write_bytes(b"y" * 200_000)
    log = tmp_path / "line.db"
    done = CliRunner().invoke(main, ["watch", str(tmp_path / "line.avi"), "--model", str(model_path), "--log", str(log),
                                     "--save", str(tmp_path / "evidence"), "--save-max-gb", "0.00015"])
    assert done.exit_code == 0, done.output
    defects = [r for r in rows_of(log) if r["status"] == "defect"]
    assert len(defects) >= 4
    kept = [r for r in defects if r["evidence"] and (tmp_path / "evidence" / r["evidence"]).is_file()]
    assert not old_day.exists()  # the oldest day went first
    assert kept and kept == defects[-len(kept):]  # what is left is the newest
    for row in kept:
        image = cv2.imread(str(tmp_path / "evidence" / row["evidence"]), cv2.IMREAD_UNCHANGED)
        assert image.shape[:2] == (128, 128)
        assert (tmp_path / "evidence" / row["evidence"].replace(".png", "_overlay.png")).is_file()
    total = sum(p.stat().st_size for p in (tmp_path / "evidence").glob("????-??-??/*.png"))
    assert total <= 150_000
    assert all(path.read_bytes() == b"y" * 200_000 for path in theirs)


def test_evidence_that_cannot_be_written_leaves_no_broken_file_and_is_counted(model_path, tmp_path):
    """The day's folder cannot be made (a file stands in its place, as a full disk refuses a write): every verdict
    is still logged, no partial PNG stays behind, and the end says how many frames lack their evidence."""
    import datetime

    rng = np.random.default_rng(7)
    write_video(tmp_path / "line.avi", (part_image(rng, 128)[0] for _ in range(6)))
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    today = datetime.datetime.now(datetime.timezone.utc).date()
    for day in (today, today + datetime.timedelta(days=1)):  # a run across midnight too
        (evidence / day.isoformat()).write_text("not a folder")
    log = tmp_path / "line.db"
    done = CliRunner().invoke(main, ["watch", str(tmp_path / "line.avi"), "--model", str(model_path), "--log", str(log),
                                     "--save", str(evidence), "--save-all"])
    assert done.exit_code == 0, done.output
    assert len(rows_of(log)) == 6 and not list(evidence.rglob("*.png"))
    assert "the evidence of 6 frames could not be written" in done.stderr


def test_evidence_takes_its_name_only_once_whole_so_a_killed_station_leaves_no_truncated_picture(tmp_path):
    """OpenCV's imwrite streams a PNG as it encodes: a large frame's file stood half-written for a quarter of a
    second under the name the log gives, what a kill -9 or a power cut then leaves. Watched while it is written,
    every evidence file that has its name decodes whole; a partial file a killed station left is cleared."""
    import threading

    from insightad_edge.evidence import Evidence

    day = tmp_path / "evidence" / "2026-11-30"
    day.mkdir(parents=True)
    (day / "080000.000_1_ok.png.part").write_bytes(b"half a picture")  # left by a station killed mid-write
    evidence = Evidence(tmp_path / "evidence", save_all=True)
    assert not list(day.glob("*.part"))
    frame = np.random.default_rng(9).integers(0, 256, (6000, 6000), dtype=np.uint8)  # 0.2 s to encode and write
    seen, broken, writing = [], [], threading.Event()

    def look():
        for path in day.glob("*.png"):
            picture = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
            (broken if picture is None or picture.shape != frame.shape else seen).append(path.name)

    def watch():
        while not writing.wait(0.002):
            look()

    observer = threading.Thread(target=watch)
    observer.start()
    try:
        for i in range(3):
            evidence.keep(f"2026-11-30T08:00:0{i}.000Z", str(i), "ok", frame, None, 1.0)
        evidence.close()
    finally:
        writing.set()
        observer.join()
    look()
    assert not broken and len(set(seen)) == 3 and evidence.failed == 0


def test_a_day_folder_holding_a_users_file_neither_stops_the_evidence_nor_loses_the_file(tmp_path):
    """The budget's oldest day held only an operator's note: removing the folder failed, the writer thread died,
    and the station hung at its next frames waiting to queue them (the line no longer judged). Now the folder
    stays with the note, and the writer goes on within its budget."""
    import threading

    from insightad_edge.evidence import Evidence

    note = tmp_path / "evidence" / "2020-01-01" / "note.txt"
    note.parent.mkdir(parents=True)
    note.write_text("checked the lamp")
    evidence = Evidence(tmp_path / "evidence", max_bytes=40_000)
    frame = np.random.default_rng(10).integers(0, 256, (128, 128), dtype=np.uint8)  # about 16 KB as PNG
    queued = threading.Thread(target=lambda: [evidence.keep(f"2026-11-30T08:00:{i:02d}.000Z", str(i), "defect",
                                                            frame, None, 1.0) for i in range(40)] + [evidence.close()],
                              daemon=True)  # a writer that dies leaves it waiting: the test fails, never hangs
    queued.start()
    queued.join(timeout=60)
    assert not queued.is_alive() and evidence.failed == 0  # all 40 taken, the writer alive to the end
    assert note.read_text() == "checked the lamp"
    kept = sorted((tmp_path / "evidence" / "2026-11-30").glob("*.png"))
    assert kept and kept[-1].name.startswith("080039.000") and sum(p.stat().st_size for p in kept) <= 40_000


def test_an_evidence_disk_that_hangs_drops_evidence_instead_of_stopping_the_line(tmp_path, monkeypatch):
    """A network share that hangs mid-write (here a real one: the writer opens a FIFO nobody reads) filled the
    queue, and the station then waited for ever to queue its next defect: no more parts were judged, and
    stopping it hung too. Now keep() waits for a stuck writer once, then drops the evidence (no file named in
    the log), and close() gives the writer up, so the station can stop and flush its log."""
    import threading

    from insightad_edge import evidence as module

    monkeypatch.setattr(module, "STUCK_S", 1.0)
    evidence = module.Evidence(tmp_path / "evidence")
    day = tmp_path / "evidence" / "2026-11-30"
    day.mkdir()
    os.mkfifo(day / "080000.000_0_defect.png.part")  # the first frame's write blocks in open(): a hung disk
    frame = np.random.default_rng(11).integers(0, 256, (128, 128), dtype=np.uint8)
    kept, began = [], time.monotonic()
    queued = threading.Thread(target=lambda: kept.extend(
        evidence.keep(f"2026-11-30T08:00:00.{i:03d}Z", str(i), "defect", frame, None, 1.0) for i in range(30)),
        daemon=True)
    queued.start()
    queued.join(timeout=20)
    assert not queued.is_alive() and time.monotonic() - began < 5  # the line went on
    assert kept[0] is not None and kept[-1] is None  # queued while the writer could take it, then dropped
    dropped = kept.count(None)
    closing = threading.Thread(target=evidence.close, daemon=True)
    closing.start()
    closing.join(timeout=20)
    assert not closing.is_alive() and evidence.failed == 30 and dropped == 30 - 17
    reader = os.open(day / "080000.000_0_defect.png.part", os.O_RDONLY | os.O_NONBLOCK)  # let the writer go
    os.close(reader)


def test_evidence_of_float_and_16_bit_frames_is_the_frame_not_a_black_picture(model_path, tmp_path):
    """A camera SDK's float frame in [0, 1] was written as 8-bit 0s and 1s; it is kept as 16-bit, like a 16-bit
    frame, and reads back as the frame the model judged. A dtype PNG cannot hold is counted, not faked."""
    from insightad_edge.evidence import Evidence
    from insightad_edge.station import Station

    part = part_image(np.random.default_rng(8), 128)[0]
    frames = [part.astype(np.float32) / 255, part.astype(np.uint16) * 257, part.astype(np.int32)]
    evidence = Evidence(tmp_path / "evidence", save_all=True)
    statuses = []
    Station(Detector(model_path), evidence=evidence, emit=lambda v: statuses.append(v.status)).run(frames)
    evidence.close()
    assert statuses == ["ok", "ok", "error"]
    kept = sorted((tmp_path / "evidence").glob("*/*_ok.png"))
    assert [path.name.split("_")[1] for path in kept] == ["0", "1"]
    for path in kept:
        saved = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert saved.dtype == np.uint16 and np.abs(saved.astype(np.int64) - part.astype(np.int64) * 257).max() <= 1
    assert not list((tmp_path / "evidence").glob("*/*_error.png")) and evidence.failed == 1


def test_evidence_leaves_its_disk_room_for_the_log(tmp_path):
    """Evidence filled the disk the log shares, and then the log could not be written: verdicts were held in
    memory, and past 200 000 lost. Evidence now stops short of the disk's last room (a floor set here just above
    what this disk has free, as a nearly full one would be): without a budget new frames are dropped and the
    user's evidence is kept; with one, the oldest evidence is given up first."""
    import shutil

    from insightad_edge.evidence import Evidence

    frame = np.random.default_rng(14).integers(0, 256, (128, 128), dtype=np.uint8)
    for budget in (None, 10**12):
        folder = tmp_path / f"budget-{budget}"
        old = folder / "2020-01-01" / "000000.000_0_defect.png"
        old.parent.mkdir(parents=True)
        cv2.imwrite(str(old), frame)
        evidence = Evidence(folder, max_bytes=budget)
        evidence.min_free = shutil.disk_usage(folder).free + 10**8  # the disk is as good as full
        kept = evidence.keep("2026-11-30T08:00:00.000Z", "1", "defect", frame, None, 1.0)
        evidence.close()
        assert not (folder / kept).exists() and evidence.failed == 1  # the new frame dropped, not the log starved
        assert old.exists() == (budget is None)  # a budget's evidence makes room; the user's own is kept


def test_evidence_that_could_not_be_written_is_on_the_page_for_an_hour_after_the_last(model_path, tmp_path):
    """Red on the line's screen while it matters: a full disk's lost evidence, until an hour after the last frame
    it cost (a banner that never goes teaches people to ignore red); /metrics keeps the count."""
    from insightad_edge.evidence import Evidence
    from insightad_edge.modelfile import FileWatch
    from insightad_edge.monitor import DriftMonitor
    from insightad_edge.station_cli import OperatorPage

    detector = Detector(model_path)
    page = OperatorPage(detector, DriftMonitor(detector.metadata), ("127.0.0.1", 0), None)
    try:
        (tmp_path / "evidence").mkdir()
        (tmp_path / "evidence" / "2026-11-30").write_text("a file where the day's folder goes: writes fail")
        evidence = Evidence(tmp_path / "evidence")
        page.sinks(None, evidence, FileWatch(detector.path, detector.sha256))
        assert page.board.summary()["trouble"] == []
        evidence.keep("2026-11-30T08:00:00.000Z", "0", "defect", part_image(np.random.default_rng(13), 128)[0],
                      None, 1.0)
        evidence.close()
        assert page.board.summary()["trouble"] == ["the evidence of 1 frames could not be written (the last 0 min ago)"]
        evidence.last_failed -= 3601
        assert page.board.summary()["trouble"] == [] and b"insightad_evidence_failed 1.0" in page.metrics.text()
    finally:
        page.close()


def test_an_evidence_folder_taken_away_while_the_station_runs_is_made_again(model_path, tmp_path):
    """A cleanup deletes the evidence folder of a running station: every later frame's evidence failed (and with
    a budget, the writer stumbled over the missing folder at each frame). Now the folder is made again."""
    import shutil

    from insightad_edge.evidence import Evidence

    folder = tmp_path / "evidence"
    evidence = Evidence(folder, max_bytes=10_000_000, save_all=True)
    image = part_image(np.random.default_rng(26), 128)[0]
    first = evidence.keep("2026-11-30T08:00:00.000Z", "a", "ok", image, None, 1.0)
    deadline = time.monotonic() + 10
    while not (folder / first).is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(folder)
    later = [evidence.keep(f"2026-11-30T08:00:0{i}.000Z", str(i), "ok", image, None, 1.0) for i in range(1, 4)]
    evidence.close()
    assert evidence.failed == 0 and all((folder / relative).is_file() for relative in later)
