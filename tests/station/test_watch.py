"""`insightad-edge watch` as a line runs it: real files, a real video, a real MJPEG stream, a real SQLite log."""
import contextlib
import dataclasses
import datetime
import json
import os
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from insightad_edge import Detector
from insightad_edge.cli import main
from loopback import free_port
from synthetic import background, corrupt_header_bmp, embed, part_image


def write_video(path: Path, frames, fps: int = 10, codec: str = "FFV1") -> Path:
    """A real video file of 128x128 gray frames (FFV1: lossless, so a frame reads back as it was written)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (128, 128), False)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def start_watch(*args, cwd=None, env=None):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INSIGHTAD_")}, **(env or {}),
           "PYTHONFAULTHANDLER": "1"}  # a station that will not stop shows where each of its threads stands
    return subprocess.Popen([sys.executable, "-m", "insightad_edge.cli", "watch", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def lines_until(process, count: int, timeout: float = 60) -> list[dict]:
    """Read JSON lines from a running watch until ``count`` arrived, or ``timeout`` passed: a watch that prints
    too few makes the test fail, never hang."""
    rows, deadline = [], time.monotonic() + timeout
    buffer = getattr(process, "unread", b"")  # what an earlier call read past its last line
    while True:
        while b"\n" in buffer and len(rows) < count:
            line, buffer = buffer.split(b"\n", 1)
            rows.append(json.loads(line))
        remaining = deadline - time.monotonic()
        if len(rows) >= count or remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            break
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        buffer += chunk
    process.unread = buffer
    return rows


def announced_page(process, timeout: float = 60) -> str:
    """The operator's page's address as a running watch names it on stderr (with --http HOST:0, the port the
    system chose)."""
    buffer, deadline = b"", time.monotonic() + timeout
    while (found := re.search(rb"operator's page on (http://\S+)/\n", buffer)) is None:
        remaining = deadline - time.monotonic()
        assert remaining > 0 and select.select([process.stderr], [], [], remaining)[0], buffer.decode()
        chunk = os.read(process.stderr.fileno(), 65536)
        assert chunk, buffer.decode()
        buffer += chunk
    return found.group(1).decode()


def stop(process) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # a hang is a failure, with every thread's stack to say where it is
        process.send_signal(signal.SIGABRT)
        raise AssertionError("the station did not stop within 60 s:\n" + process.communicate(timeout=60)[1]) from None
    assert process.returncode == 0, err
    return out, err


def rows_of(log: Path) -> list[dict]:
    with sqlite3.connect(log) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute("SELECT * FROM inspections ORDER BY id")]


def events_of(log: Path) -> list[str]:
    with sqlite3.connect(log) as connection:
        return [r[0] for r in connection.execute("SELECT kind FROM events ORDER BY id")]


def test_a_video_file_gives_the_verdicts_score_gives_its_frames(model_path, tmp_path):
    rng = np.random.default_rng(1)
    frames = [part_image(rng, 128, defect=i % 3 == 2)[0] for i in range(9)] + [background(rng, 128, 128)]
    write_video(tmp_path / "line.avi", frames)
    decoded = tmp_path / "decoded"
    decoded.mkdir()
    capture = cv2.VideoCapture(str(tmp_path / "line.avi"))
    for i in range(len(frames)):
        ok, image = capture.read()
        cv2.imwrite(str(decoded / f"{i:03d}.png"), image)
    log = tmp_path / "line.db"
    done = CliRunner().invoke(main, ["watch", str(tmp_path / "line.avi"), "--model", str(model_path), "--log", str(log),
                                     "--format", "jsonl"])
    assert done.exit_code == 0, done.output
    watched = [json.loads(line) for line in done.stdout.splitlines()]
    scored = CliRunner().invoke(main, ["score", str(decoded), "--model", str(model_path), "--format", "jsonl"])
    reference = [json.loads(line) for line in scored.stdout.splitlines()]
    assert [w["frame"] for w in watched] == [str(i) for i in range(10)]
    assert [w["status"] for w in watched][-1] == "not_inspectable" and "defect" in [w["status"] for w in watched]
    for w, r in zip(watched, reference):
        assert w["anomaly"] == r["anomaly"] and (w["score"] is None) == (r["score"] is None)
        if w["score"] is not None:
            assert w["score"] == pytest.approx(r["score"], rel=1e-6)
        assert set(w) == {"path", "score", "threshold", "anomaly", "error", "source", "frame", "status", "skipped",
                          "time"}
    logged = rows_of(log)
    assert len(logged) == 10 and [r["status"] for r in logged] == [w["status"] for w in watched]
    assert logged[0]["model_sha256"] == Detector(model_path).sha256 and logged[0]["time"].endswith("Z")
    assert [r["time"] for r in logged] == [w["time"] for w in watched]  # stdout's verdicts are the log's
    assert events_of(log) == ["start", "opened", "ended", "stop"]
    with sqlite3.connect(log) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 1
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "end of video after 10 frames\n" in done.stderr


def test_a_video_cut_short_says_so_at_its_end(model_path, tmp_path):
    """A recording cut off (disk full, a copy interrupted) ends early: the end says how much of it was there."""
    rng = np.random.default_rng(13)
    write_video(tmp_path / "line.avi", (part_image(rng, 128)[0] for _ in range(60)), codec="MJPG")
    whole = (tmp_path / "line.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(whole[:len(whole) // 2])
    done = CliRunner().invoke(main, ["watch", str(tmp_path / "cut.avi"), "--model", str(model_path), "--no-log"])
    assert done.exit_code == 0 and "of the 60 its header declares: the file is cut short or damaged" in done.stderr


def test_a_folder_judges_each_new_file_once_complete_and_a_restart_judges_nothing_twice(model_path, tmp_path):
    folder, log = tmp_path / "incoming", tmp_path / "line.db"
    folder.mkdir()
    rng = np.random.default_rng(2)
    cv2.imwrite(str(folder / "before.png"), part_image(rng, 128)[0])  # there before: not judged without --existing
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    time.sleep(1.0)
    for i in range(3):
        cv2.imwrite(str(folder / f"part_{i}.png"), part_image(rng, 128, defect=i == 1)[0])
    slow = cv2.imencode(".png", part_image(rng, 128)[0])[1].tobytes()
    with open(folder / "slow.png", "wb") as handle:  # a camera PC writing in chunks, with pauses
        for start in range(0, len(slow), len(slow) // 4 + 1):
            handle.write(slow[start:start + len(slow) // 4 + 1])
            handle.flush()
            time.sleep(0.4)
    rows = lines_until(process, 4)
    stop(process)
    names = sorted(Path(r["frame"]).name for r in rows)
    assert names == ["part_0.png", "part_1.png", "part_2.png", "slow.png"]
    assert all(r["error"] is None for r in rows), rows
    assert {Path(r["frame"]).name: r["status"] for r in rows}["part_1.png"] == "defect"

    cv2.imwrite(str(folder / "after.png"), part_image(rng, 128)[0])
    again = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", "--existing")
    more = lines_until(again, 2, timeout=30)
    stop(again)
    assert sorted(Path(r["frame"]).name for r in more) == ["after.png", "before.png"]
    logged = [Path(r["frame"]).name for r in rows_of(log)]
    assert len(logged) == len(set(logged)) == 6


def test_parts_that_came_while_the_station_was_down_are_judged_when_it_is_back(model_path, tmp_path):
    """A crash, a reboot, systemd's restart: without --existing, files written while no station watched were taken
    for old ones and passed unjudged. Now they are judged on the restart, also a copy that keeps its source's old
    modification time (as `rsync -a`, `cp -p` and robocopy make: a camera PC that pushes its pictures every few
    minutes); what was there long before the first station stays as it was, and nothing is judged twice.

    Slow on purpose: a file's change time cannot be set, so "long before" (more than the minute's margin for
    coarse clocks) takes a minute of waiting."""
    folder, log, elsewhere = tmp_path / "incoming", tmp_path / "line.db", tmp_path / "camera_pc"
    folder.mkdir()
    elsewhere.mkdir()
    rng = np.random.default_rng(24)
    cv2.imwrite(str(folder / "before.png"), part_image(rng, 128)[0])
    first = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    time.sleep(61.0)  # before.png came more than the margin before this station is last heard of
    cv2.imwrite(str(folder / "first.png"), part_image(rng, 128)[0])
    assert len(lines_until(first, 1)) == 1
    time.sleep(1.0)  # its verdict committed (one killed within a commit's quarter second is judged again)
    first.send_signal(signal.SIGKILL)  # the station dies; parts keep coming
    first.wait(timeout=30)
    for name in ("while_down_0.png", "while_down_1.png"):
        cv2.imwrite(str(folder / name), part_image(rng, 128, defect=name.endswith("1.png"))[0])
    cv2.imwrite(str(elsewhere / "copied.png"), part_image(rng, 128)[0])
    hour_ago = time.time() - 3600  # taken an hour ago, pushed while the station was down, its time kept
    os.utime(elsewhere / "copied.png", (hour_ago, hour_ago))
    shutil.copy2(elsewhere / "copied.png", folder / "copied.png")
    again = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    try:
        rows = lines_until(again, 3)
        time.sleep(1.0)
        cv2.imwrite(str(folder / "after.png"), part_image(rng, 128)[0])
        rows += lines_until(again, 1)
    finally:
        _, err = stop(again)
    assert sorted(Path(r["frame"]).name for r in rows) == ["after.png", "copied.png", "while_down_0.png",
                                                            "while_down_1.png"]
    assert "(and 3 that came while no station watched it)" in err
    logged = sorted(Path(r["frame"]).name for r in rows_of(log))
    assert logged == ["after.png", "copied.png", "first.png", "while_down_0.png", "while_down_1.png"]


def test_parts_that_came_during_a_restart_are_judged_when_the_folders_clock_runs_behind(model_path, tmp_path):
    """On a network share the files' times are the server's clock, and a NAS without time synchronisation runs
    minutes behind the station PC: the parts that came during a restart of a few seconds looked five minutes
    older than the station's last word in its log, were taken for old files, and passed unjudged. The folder's
    own clock now counts too: what came after the newest file judged, and was never judged, is judged. Here the
    PC's clock is made to run ahead instead, in the log it wrote (the same gap: a file's times cannot be set back
    by the test, its change time least of all)."""
    folder, log = tmp_path / "share", tmp_path / "line.db"
    folder.mkdir()
    rng = np.random.default_rng(27)
    first = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    time.sleep(2.0)  # watching: the next file is a new one
    cv2.imwrite(str(folder / "judged.png"), part_image(rng, 128)[0])
    assert len(lines_until(first, 1)) == 1
    time.sleep(1.0)  # its verdict committed
    first.send_signal(signal.SIGKILL)  # systemd restarts the station 5 s later
    first.wait(timeout=30)
    with sqlite3.connect(log) as connection:  # the PC's clock, five minutes ahead of the share's
        for table in ("inspections", "events"):
            connection.execute(f"UPDATE {table} SET time = strftime('%Y-%m-%dT%H:%M:%fZ', time, '+5 minutes')")
    for name in ("during_restart_0.png", "during_restart_1.png"):
        cv2.imwrite(str(folder / name), part_image(rng, 128, defect=name.endswith("1.png"))[0])
    again = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    try:
        rows = lines_until(again, 2, timeout=20)
    finally:
        _, err = stop(again)
    assert sorted(Path(r["frame"]).name for r in rows) == ["during_restart_0.png", "during_restart_1.png"], err
    assert "(and 2 that came while no station watched it)" in err


def test_a_part_whose_name_is_not_utf8_is_judged_logged_and_shown(model_path, tmp_path):
    """A camera that writes Latin-1 names, or a Windows share mounted with another character set: the name reaches
    Python with surrogates. SQLite refused the verdict, and the failed insert left its transaction open, so every
    later verdict waited in memory until the station stopped and none reached the log; the page's summary (which
    names the ignored file) answered 500; a strict UTF-8 stdout (the usual locale) ended the station. Now the
    name is kept with its odd bytes written out, the same way each time, so a restart judges nothing twice."""
    import urllib.request

    folder, log = tmp_path / "share", tmp_path / "line.db"
    folder.mkdir()
    rng = np.random.default_rng(29)
    strict = {"PYTHONIOENCODING": "utf-8"}  # errors="strict", as under en_US.UTF-8
    process = start_watch(folder, "--model", model_path, "--log", log, "--http", "127.0.0.1:0", env=strict)
    try:
        page = announced_page(process)
        time.sleep(1.0)
        for name in (b"pr\xfcfteil_\xe9.png", b"plain.png"):
            (folder / os.fsdecode(name)).write_bytes(cv2.imencode(".png", part_image(rng, 128)[0])[1].tobytes())
        (folder / os.fsdecode(b"notiz_\xe9.txt")).write_text("not a part")
        deadline = time.monotonic() + 30
        while len(_rows_quietly(log)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(6.0)  # the .txt stays long enough to be named
        summary = urllib.request.urlopen(page + "/api/summary", timeout=10)
        assert summary.status == 200 and "notiz_" in summary.read().decode()
    finally:
        out, err = stop(process)
    assert sorted(Path(r["frame"]).name for r in rows_of(log)) == ["plain.png", "pr\\xfcfteil_\\xe9.png"]
    assert "pr\\xfcfteil_\\xe9.png" in out and "notiz_\\xe9.txt" in err and "never reached" not in err
    again = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", env=strict)
    time.sleep(3.0)
    out, err = stop(again)
    assert out == "" and len(rows_of(log)) == 2, out  # known by its name as the log keeps it: not judged twice


def _rows_quietly(log: Path) -> list:
    try:
        return rows_of(log)
    except sqlite3.Error:  # the station is still making its tables
        return []


def test_a_file_whose_header_the_decoder_refuses_is_an_error_row_not_the_end_of_the_station(model_path, tmp_path):
    """OpenCV raises (not returns nothing) on some damaged BMPs: the station died on the first one, and under
    systemd came back to die on it again, judging nothing more."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a_damaged.bmp").write_bytes(corrupt_header_bmp())
    cv2.imwrite(str(folder / "b_part.png"), part_image(np.random.default_rng(26), 128)[0])
    process = start_watch(folder, "--existing", "--model", model_path, "--no-log", "--format", "jsonl")
    try:
        rows = lines_until(process, 2)
    finally:
        stop(process)  # exit 0: it was still running
    by_name = {Path(r["frame"]).name: r for r in rows}  # the damaged file is given 5 s to be written whole
    assert by_name["b_part.png"]["status"] == "ok" and by_name["a_damaged.bmp"]["status"] == "error"
    assert "its header is corrupt" in by_name["a_damaged.bmp"]["error"]


def test_images_in_subfolders_are_named_not_silently_unjudged(model_path, tmp_path):
    """A camera that writes into a folder of the day: pointed at the parent, the station judged nothing and said
    nothing; pointed at today's folder, it went quiet at midnight. Subfolders are not watched, and now it says so,
    at start and when a new one appears, on stderr, in the log and in red on the page."""
    import urllib.request

    folder, log = tmp_path / "incoming", tmp_path / "line.db"
    (folder / "2026-11-29").mkdir(parents=True)
    cv2.imwrite(str(folder / "2026-11-29" / "p.png"), part_image(np.random.default_rng(28), 128)[0])
    (folder / "empty").mkdir()  # a subfolder without images is not worth a word
    process = start_watch(folder, "--model", model_path, "--log", log, "--http", "127.0.0.1:0")
    try:
        base = announced_page(process)
        time.sleep(1.0)
        (folder / "2026-11-30").mkdir()  # midnight: the camera's new folder
        deadline = time.monotonic() + 30
        while len(trouble := json.loads(urllib.request.urlopen(base + "/api/summary", timeout=10).read())["trouble"]) < 2:
            assert time.monotonic() < deadline, trouble
            time.sleep(0.2)
    finally:
        _, err = stop(process)
    assert "subfolders of" in trouble[0] and "(2026-11-29)" in trouble[0] and "empty" not in trouble[0]
    assert "a new subfolder appeared" in trouble[1] and "(2026-11-30)" in trouble[1]
    assert "images there are not judged" in err and events_of(log).count("unwatched") == 2


def test_a_folder_that_goes_away_and_comes_back_is_lost_meanwhile_and_judges_nothing_twice(model_path, tmp_path):
    """A network share that drops: its files were not taken away, and must not be judged again on its return."""
    folder, away = tmp_path / "share", tmp_path / "unmounted"
    folder.mkdir()
    log = tmp_path / "line.db"
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    rng = np.random.default_rng(22)
    try:
        time.sleep(1.0)
        cv2.imwrite(str(folder / "p0.png"), part_image(rng, 128)[0])
        assert len(lines_until(process, 1)) == 1
        folder.rename(away)
        time.sleep(2.0)
        away.rename(folder)
        cv2.imwrite(str(folder / "p1.png"), part_image(rng, 128)[0])
        assert [Path(r["frame"]).name for r in lines_until(process, 2, timeout=5)] == ["p1.png"]
    finally:
        _, err = stop(process)
    assert "cannot read" in err and "can be read again" in err
    kinds = events_of(log)
    assert kinds.index("lost") < kinds.index("reopened")


def test_a_camera_that_always_writes_the_same_file_name_gets_a_verdict_for_each_part(model_path, tmp_path):
    """Smart cameras often overwrite one file (last.bmp) per part: each write is a new part, not a file seen."""
    folder = tmp_path / "camera"
    folder.mkdir()
    rng = np.random.default_rng(12)
    process = start_watch(folder, "--model", model_path, "--log", tmp_path / "line.db", "--format", "jsonl")
    time.sleep(1.0)
    statuses = []
    for defect in (False, True, False):  # a BMP of one size: each write has exactly the size of the last
        cv2.imwrite(str(folder / "last.bmp"), part_image(rng, 128, defect=defect)[0])
        statuses += [row["status"] for row in lines_until(process, 1, timeout=30)]
    (folder / "last.bmp").unlink()  # taken away, then written anew: a new part too, whatever the log holds
    time.sleep(1.5)
    cv2.imwrite(str(folder / "last.bmp"), part_image(rng, 128, defect=True)[0])
    statuses += [row["status"] for row in lines_until(process, 1, timeout=30)]
    stop(process)
    assert statuses == ["ok", "defect", "ok", "defect"]


def test_a_picture_the_camera_writes_again_gets_no_verdict(model_path, tmp_path):
    """A trigger that fires without an exposure, or a camera that saves its last buffer for the next part, writes
    the last picture again: judged, the part the camera never saw got the verdict of the one before (ok). No two
    shots of a camera are alike, pixel for pixel: such a file gets a row without a verdict that says so."""
    folder = tmp_path / "camera"
    folder.mkdir()
    rng = np.random.default_rng(13)
    good, other, scratched = (part_image(rng, 128, defect=d)[0] for d in (False, False, True))
    process = start_watch(folder, "--model", model_path, "--log", tmp_path / "line.db", "--format", "jsonl")
    time.sleep(1.0)
    rows = []
    for name, picture in (("p1.png", good), ("p2.png", good), ("last.bmp", other), ("last.bmp", other),
                          ("last.bmp", scratched)):
        cv2.imwrite(str(folder / name), picture)
        if name == "last.bmp":
            os.utime(folder / name, ns=(time.time_ns(), time.time_ns()))  # written again, as a camera writes it
        rows += lines_until(process, 1, timeout=30)
    stop(process)
    assert [(Path(r["frame"]).name, r["status"]) for r in rows] == [
        ("p1.png", "ok"), ("p2.png", "not_inspectable"), ("last.bmp", "ok"), ("last.bmp", "not_inspectable"),
        ("last.bmp", "defect")]
    assert rows[1]["error"].startswith(f"not inspectable: the same picture as {folder / 'p1.png'}, pixel for pixel")
    assert rows[1]["score"] is None and rows[1]["anomaly"] is None
    assert [r["status"] for r in rows_of(tmp_path / "line.db")] == [r["status"] for r in rows]


class MJPEG(BaseHTTPRequestHandler):
    """multipart/x-mixed-replace JPEG frames of synthetic parts, as IP cameras serve them."""

    frames: list = []
    live = threading.Event()  # cleared: every open stream ends, as when a camera is unplugged
    interval = 0.05  # seconds between frames

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for i in range(100000):
                if not self.live.is_set():
                    break
                data = self.frames[i % len(self.frames)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                time.sleep(self.interval)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def serve_mjpeg(port: int) -> ThreadingHTTPServer:
    MJPEG.live.set()
    server = ThreadingHTTPServer(("127.0.0.1", port), MJPEG)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def watch_stream(port: int, detector: Detector, seconds: float, credentials: str = "") -> tuple[list, list]:
    """The Python station on this test's MJPEG camera (MJPEG.frames) for SECONDS: its verdicts and events."""
    import insightad_edge
    from insightad_edge.frames import Stop

    server = serve_mjpeg(port)
    stop, events = Stop(), []
    threading.Timer(seconds, stop.set).start()
    try:
        verdicts = list(insightad_edge.watch(f"http://{credentials}127.0.0.1:{port}/stream.mjpg", detector, stop=stop,
                                             on_event=events.append))
    finally:
        server.shutdown()
        server.server_close()
    return verdicts, events


def jpegs(seed: int, count: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [cv2.imencode(".jpg", part_image(rng, 128)[0], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            for _ in range(count)]


def watch_a_camera(frames: list[bytes], model_path, log: Path):
    """An MJPEG camera on a free loopback port serving FRAMES, and a watch on it: (port, server, watch)."""
    MJPEG.frames = frames
    port = free_port()
    server = serve_mjpeg(port)
    return port, server, start_watch(f"http://127.0.0.1:{port}/stream.mjpg", "--model", model_path, "--log", log,
                                     "--format", "jsonl")


def test_a_stream_that_drops_is_reopened_and_the_station_goes_on(model_path, tmp_path):
    log = tmp_path / "line.db"
    port, server, process = watch_a_camera(jpegs(3, 5), model_path, log)
    try:
        assert len(lines_until(process, 5)) == 5
        MJPEG.live.clear()
        server.shutdown()
        server.server_close()
        time.sleep(2.0)
        server = serve_mjpeg(port)
        assert len(lines_until(process, 5)) == 5
    finally:
        _, err = stop(process)
        server.shutdown()
        server.server_close()
    kinds = events_of(log)
    assert "lost" in kinds and "reopened" in kinds and kinds.index("lost") < kinds.index("reopened")
    assert "lost" in err and "reopened" in err
    assert len(rows_of(log)) >= 10


def test_a_frozen_camera_is_lost_not_judged_again_and_again(model_path, tmp_path):
    """A hung camera that sends its last image over and over would have every part it no longer sees pass."""
    from insightad_edge.streams import STREAM_TIMEOUT_MS

    parts = jpegs(5, 5)
    log = tmp_path / "line.db"
    _, server, process = watch_a_camera(parts[:1], model_path, log)  # 20 times a second, the same image
    try:
        assert len(lines_until(process, 1)) == 1
        assert lines_until(process, 1, timeout=STREAM_TIMEOUT_MS / 1000.0 + 2.0) == []
        MJPEG.frames = parts  # the camera comes back to life
        assert len(lines_until(process, 5)) == 5
    finally:
        _, err = stop(process)
        server.shutdown()
        server.server_close()
    assert "has sent the same image" in err and "sends new images again" in err
    kinds = events_of(log)
    assert kinds.count("lost") == 1 and kinds.index("lost") < kinds.index("reopened", kinds.index("opened") + 1)


def test_a_camera_frozen_for_long_is_lost_once_not_every_few_seconds(model_path, monkeypatch):
    """Reopening a frozen stream is retried quietly with backoff: one loss, one recovery, not an event storm."""
    from insightad_edge import streams

    monkeypatch.setattr(streams, "STREAM_TIMEOUT_MS", 300)  # ten freezes' time in three seconds
    parts = jpegs(7, 5)
    MJPEG.frames = parts[:1]
    threading.Timer(3.0, lambda: setattr(MJPEG, "frames", parts)).start()
    verdicts, events = watch_stream(free_port(), Detector(model_path), seconds=5.0)
    assert [e.kind for e in events] == ["opened", "lost", "reopened"]
    assert "same image" in events[1].message and len(verdicts) > 5


def test_an_rtsp_camera_that_hangs_is_lost_once_and_back_when_it_sends_again(model_path, monkeypatch):
    """Most IP cameras speak RTSP. One whose encoder hangs still answers the requests that open its stream, so the
    station said it was back each time it opened it again, and lost again when nothing came: lost and reopened
    every few seconds, the page showing the last verdict from before as live between. Here a real RTSP session
    through OpenCV (RTP/JPEG on loopback), over TCP, so a network that loses packets cannot tear a frame."""
    import insightad_edge
    from insightad_edge import streams
    from insightad_edge.frames import Stop
    from rtsp import RTSPCamera

    monkeypatch.setattr(streams, "STREAM_TIMEOUT_MS", 2000)  # the same story in less time
    monkeypatch.delenv(streams.CAPTURE_OPTIONS, raising=False)  # the station sets it: gone again after the test
    rng = np.random.default_rng(17)
    camera = RTSPCamera([cv2.cvtColor(part_image(rng, 128)[0], cv2.COLOR_GRAY2BGR) for _ in range(5)], fps=25)
    hang = {}
    threading.Timer(2.0, lambda: hang.update(until=time.monotonic() + 8.0) or camera.hang(8.0)).start()
    stop, events, verdicts = Stop(), [], []
    threading.Timer(14.0, stop.set).start()
    try:
        for verdict in insightad_edge.watch(f"rtsp://line:Se6ret@127.0.0.1:{camera.port}/live", Detector(model_path),
                                            stop=stop, on_event=lambda event: events.append((time.monotonic(), event))):
            verdicts.append((time.monotonic(), verdict))
    finally:
        camera.close()
    assert [event.kind for _, event in events] == ["opened", "lost", "reopened"], [e for _, e in events]
    (_, opened), (lost_at, lost), (back_at, back) = events
    assert back_at >= hang["until"] and "after" in back.message  # back with its images, after the attempts it took
    assert len([at for at, _ in verdicts if at < lost_at]) > 10 and len([at for at, _ in verdicts if at > back_at]) > 10
    assert all(verdict.status == "ok" for _, verdict in verdicts)
    assert camera.transports and all("RTP/AVP/TCP" in transport for transport in camera.transports)
    assert all("line:***@" in event.message and "Se6ret" not in event.message for _, event in events)


def test_rtsp_is_read_over_tcp_when_the_site_sets_capture_options_of_its_own(model_path, monkeypatch):
    """OpenCV 4 asks an RTSP camera for UDP, and OpenCV 5 does too once OPENCV_FFMPEG_CAPTURE_OPTIONS is set without
    a transport (a site's read timeout, say): a network that loses packets then tears frames into gray smears, each
    judged as the part. The station asks for TCP, keeping the site's own options beside it."""
    import insightad_edge
    from insightad_edge import streams
    from insightad_edge.frames import Stop
    from rtsp import RTSPCamera

    monkeypatch.setenv(streams.CAPTURE_OPTIONS, "max_delay;500000")
    camera = RTSPCamera([cv2.cvtColor(part_image(np.random.default_rng(18), 128)[0], cv2.COLOR_GRAY2BGR)
                         for _ in range(3)], fps=25)
    stop = Stop()
    threading.Timer(3.0, stop.set).start()
    try:
        verdicts = list(insightad_edge.watch(f"rtsp://127.0.0.1:{camera.port}/live", Detector(model_path), stop=stop))
    finally:
        camera.close()
    assert verdicts and all(verdict.status == "ok" for verdict in verdicts)
    assert camera.transports and all("RTP/AVP/TCP" in transport for transport in camera.transports), camera.transports
    assert os.environ[streams.CAPTURE_OPTIONS] == "max_delay;500000|rtsp_transport;tcp"


def test_a_frame_a_camera_sends_damaged_is_an_error_not_a_part_judged_on_gray(model_path):
    """A Motion JPEG camera that sends a frame cut short (its encoder's buffer overrun, a firmware fault): FFmpeg's
    decoder filled the missing part with gray, and the station judged that as the part. The stream is now read as
    the camera's own JPEGs, decoded by the detector as a file is: the damaged frame is an error row that says so."""
    parts = jpegs(12, 3)
    MJPEG.frames = [parts[0], parts[1], parts[2][: len(parts[2]) * 3 // 5], parts[2]]  # the third cut short
    verdicts, events = watch_stream(free_port(), Detector(model_path), seconds=3.0)
    errors = [v for v in verdicts if v.status == "error"]
    assert errors and all("not a readable image" in v.error and v.image is None for v in errors)
    judged = [v for v in verdicts if v.status != "error"]
    assert len(judged) >= 2 * len(errors) and all(v.image is not None and v.image.ndim == 2 for v in judged)


def test_a_camera_named_by_its_device_file_is_watched_as_a_camera(model_path, tmp_path):
    """Two cameras' indices can swap at boot; the name udev gives each in /dev/v4l/by-id/ stays its own. Such a name
    was refused as no folder, video, index or URL; now it is a camera: one unplugged (its file not there) or a
    device file that is no camera is said not to open, what to check, and retried until the station stops. (No
    camera here to read from: Video4Linux opening a device by its file's name is OpenCV's.)"""
    absent = "/dev/v4l/by-id/usb-insightad_test_camera-video-index0"
    refused = CliRunner().invoke(main, ["watch", absent, "--existing", "--model", str(model_path), "--no-log"])
    assert refused.exit_code == 2 and "only a folder has images there already" in refused.stderr, refused.output
    unmade = CliRunner().invoke(main, ["watch", "/dev/shm/insightad-folder-not-made", "--model", str(model_path)])
    assert unmade.exit_code == 2 and "is neither a folder" in unmade.stderr, unmade.output  # a RAM disk's, not a camera
    for device in (absent, "/dev/null"):
        log = tmp_path / f"{device.rsplit('/', 1)[-1]}.db"
        process = start_watch(device, "--model", model_path, "--log", log)
        time.sleep(3.0)
        _, err = stop(process)
        assert f"cannot open {device} (is the camera connected, not used by another program" in err, err
        assert events_of(log) == ["start", "lost", "stop"]


def test_a_camera_driver_that_raises_is_a_lost_camera_reopened_not_a_silent_stall(model_path, monkeypatch):
    """An exception from the capture (a driver's, injected here: none can be made to fail on demand) killed the
    reader thread: the station then waited for frames for ever, no event said so and the page said live."""
    import cv2

    from insightad_edge import streams

    calls = {"n": 0}
    real_of = streams.Novelty.of

    port = free_port()
    url = f"http://line:s3cret@127.0.0.1:{port}/stream.mjpg"

    def failing_once(self, image):
        calls["n"] += 1
        if calls["n"] == 5:
            raise cv2.error(f"the driver gave up on {url}")  # as a driver names what it failed on
        return real_of(self, image)

    monkeypatch.setattr(streams.Novelty, "of", failing_once)
    MJPEG.frames = jpegs(8, 5)
    verdicts, events = watch_stream(port, Detector(model_path), seconds=4.0, credentials="line:s3cret@")
    assert [e.kind for e in events] == ["opened", "lost", "reopened"] and "the driver gave up" in events[1].message
    assert len(verdicts) > 10  # judged on after the failure
    assert not any("s3cret" in e.message or "s3cret" in e.source for e in events), events
    assert all("line:***@127.0.0.1" in e.source for e in events)


def test_a_stream_urls_password_is_never_shown_however_it_is_typed():
    """A password with a raw #, ?, / or @ (as people type them into a camera's URL) made the URL parser show it,
    on the page, in the events and in the log; and many MJPEG cameras take theirs in the query."""
    from insightad_edge.streams import shown

    for url, expected in (("rtsp://admin:pa#ss@10.0.0.5/stream", "rtsp://admin:***@10.0.0.5/stream"),
                          ("rtsp://admin:p?s/s@10.0.0.5:554/s", "rtsp://admin:***@10.0.0.5:554/s"),
                          ("rtsp://admin:p@ss@[fe80::1]:554/s", "rtsp://admin:***@[fe80::1]:554/s"),
                          ("http://cam/videostream.cgi?user=admin&pwd=pass&rate=0",
                           "http://cam/videostream.cgi?user=admin&pwd=***&rate=0"),
                          ("http://cam/api?ApiKey=pass#view", "http://cam/api?ApiKey=***#view"),
                          ("rtsp://admin@cam:554/live?channel=1", "rtsp://admin@cam:554/live?channel=1"),
                          ("0", "0"), ("/data/line #2", "/data/line #2")):
        assert shown(url) == expected


def test_a_closed_terminal_stops_the_station_cleanly(model_path, tmp_path):
    """SIGHUP (the SSH session that started it ends) flushes the log and prints the summary, like Ctrl-C."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    log = tmp_path / "line.db"
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    time.sleep(1.0)
    cv2.imwrite(str(folder / "p.png"), part_image(np.random.default_rng(23), 128)[0])
    assert len(lines_until(process, 1)) == 1
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "watch stopped: 1 frames" in err
    assert len(rows_of(log)) == 1 and events_of(log)[-1] == "stop"


def test_every_commit_of_the_log_is_synced_so_a_power_cut_takes_back_none(tmp_path):
    """A power cut cannot be made here; what can be checked is that the writer asks SQLite to sync each commit
    (WAL's default, NORMAL, leaves them in the page cache until a checkpoint)."""
    from insightad_edge.inspections import InspectionLog

    log = InspectionLog(tmp_path / "line.db")
    try:
        assert log._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        log.close()


def test_a_station_whose_stdout_goes_away_keeps_judging_into_its_log(model_path, tmp_path):
    """`watch ... | consumer` and the consumer ends: the log is the record, so the line goes on and says so once;
    without a log nothing would keep the verdicts, and the station stops with the reason."""
    rng = np.random.default_rng(12)
    write_video(tmp_path / "line.avi", (part_image(rng, 128)[0] for _ in range(20)))
    log = tmp_path / "line.db"
    for options, code, said in ((["--log", log], 0, "the verdicts go on to the log only"),
                                (["--no-log"], 1, "there is no log to keep the verdicts")):
        process = start_watch(tmp_path / "line.avi", "--model", model_path, "--format", "jsonl", *options)
        process.stdout.close()  # the reader is gone before the first verdict
        err = process.stderr.read()
        assert process.wait(timeout=60) == code and said in err and "Traceback" not in err, err
    assert len(rows_of(log)) == 20


def test_kill_9_loses_at_most_the_last_second_and_never_the_file(model_path, tmp_path):
    rng = np.random.default_rng(4)
    frames = [part_image(rng, 128)[0] for _ in range(50)]
    write_video(tmp_path / "long.avi", (frames[i % len(frames)] for i in range(6000)), fps=30)  # longer than the test runs
    log = tmp_path / "line.db"
    process = start_watch(tmp_path / "long.avi", "--model", model_path, "--log", log, "--format", "jsonl")
    printed = [(time.monotonic(), json.loads(process.stdout.readline()))]
    while time.monotonic() - printed[0][0] < 2.5:
        printed.append((time.monotonic(), json.loads(process.stdout.readline())))
    process.kill()
    killed_at = time.monotonic()
    process.wait(timeout=30)
    with sqlite3.connect(log) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    logged = {r["frame"] for r in rows_of(log)}
    older = [row["frame"] for at, row in printed if at < killed_at - 1.0]
    assert len(older) > 100 and set(older) <= logged
    assert len(logged) < 6000  # it really was killed mid-run


def test_log_and_summary_on_a_known_log(tmp_path):
    from insightad_edge.inspections import InspectionLog

    log = tmp_path / "line #2 ?%41" / "known.db"  # a folder name that is no part of a URI as it stands
    log.parent.mkdir()
    writer = InspectionLog(log)
    statuses = ["ok"] * 6 + ["defect"] * 2 + ["not_inspectable", "error"]
    for i, status in enumerate(statuses):
        hour = 8 if i < 5 else 9
        writer.record({"time": f"2026-11-29T{hour:02d}:{i:02d}:00.000Z", "source": "cam", "frame": str(i), "status": status,
                       "score": None if status in ("not_inspectable", "error") else float(i),
                       "threshold": 5.0, "anomaly": {"ok": 0, "defect": 1}.get(status), "model": "m.onnx",
                       "model_sha256": "abc", "latency_ms": float(10 + i), "skipped": i % 3})
    writer.event("lost", "lost cam; reopening with backoff", "cam")
    writer.event("drift", "drift alarm: darker than any training image", "cam")
    writer.close()
    happened = CliRunner().invoke(main, ["log", str(log), "--events", "--format", "jsonl"])
    kinds = [json.loads(line)["kind"] for line in happened.stdout.splitlines()]
    assert happened.exit_code == 0 and kinds == ["lost", "drift"]
    assert CliRunner().invoke(main, ["log", str(log), "--events", "--since", "2099-01-01"]).stdout.count("\n") == 1
    assert CliRunner().invoke(main, ["log", str(log), "--events", "--summary"]).exit_code == 2
    listed = CliRunner().invoke(main, ["log", str(log), "--status", "defect", "--format", "jsonl"])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["frame"] for r in rows] == ["6", "7"] and all(r["anomaly"] is True for r in rows)
    assert [r["skipped"] for r in rows] == [0, 1]
    since = CliRunner().invoke(main, ["log", str(log), "--since", "2026-11-29T09:00Z", "--format", "csv"])
    assert len(since.stdout.splitlines()) == 1 + 5
    summary = CliRunner().invoke(main, ["log", str(log), "--summary", "--format", "jsonl"])
    hours = [json.loads(line) for line in summary.stdout.splitlines()]
    assert hours[0] == {"hour": "2026-11-29T08:00Z", "parts": 5, "defects": 0, "defect_rate": 0.0,
                        "not_inspectable": 0, "errors": 0, "skipped": 4, "p95_latency_ms": pytest.approx(13.8)}
    assert hours[1]["parts"] == 5 and hours[1]["defects"] == 2 and hours[1]["defect_rate"] == pytest.approx(2 / 3)
    assert hours[1]["not_inspectable"] == 1 and hours[1]["errors"] == 1 and hours[1]["skipped"] == 5
    assert hours[1]["p95_latency_ms"] == pytest.approx(np.percentile([15, 16, 17, 18, 19], 95))
    bounded = CliRunner().invoke(main, ["log", str(log), "--summary", "--format", "jsonl", "--since", "2026-11-29T08:02Z",
                                        "--until", "2026-11-29T09:07Z"])
    hours = [json.loads(line) for line in bounded.stdout.splitlines()]
    assert [h["parts"] for h in hours] == [3, 2] and hours[0]["skipped"] == 2 + 0 + 1
    assert [h["p95_latency_ms"] for h in hours] == pytest.approx([np.percentile([12, 13, 14], 95), np.percentile([15, 16], 95)])
    assert CliRunner().invoke(main, ["log", str(log), "--since", "yesterday"]).exit_code == 2
    far = CliRunner().invoke(main, ["log", str(log), "--until", "1000000d"])  # was an OverflowError's traceback
    assert far.exit_code == 2 and "--until" in far.stderr and "outside the calendar" in far.stderr, far.output
    (tmp_path / "notes.txt").write_text("not a log")
    for arguments in ([], ["--summary"]):
        unreadable = CliRunner().invoke(main, ["log", str(tmp_path / "notes.txt"), *arguments])
        assert unreadable.exit_code == 3 and "cannot be read as an inspection log" in unreadable.stderr


def test_tables_tell_a_small_score_from_its_threshold(tmp_path):
    """A patch model's threshold can be 0.000198: `log`'s four decimals showed a defect's score and its threshold
    both as 0.0002, and six decimals left them three digits. Every table gives six significant digits."""
    from insightad_edge.inspections import InspectionLog

    log = tmp_path / "small.db"
    writer = InspectionLog(log)
    for i, score in enumerate((0.000198529, 0.000187)):
        writer.record({"time": f"2026-11-29T08:0{i}:00.000Z", "source": "cam", "frame": str(i), "score": score,
                       "status": "defect" if score > 0.000198198 else "ok", "threshold": 0.000198198,
                       "anomaly": int(score > 0.000198198), "model": "m.onnx", "model_sha256": "abc", "latency_ms": 12.5,
                       "skipped": 0})
    writer.close()
    table = CliRunner().invoke(main, ["log", str(log)]).stdout
    assert "0.000198529" in table and "0.000187" in table and table.count("0.000198198") == 2
    from insightad_edge.console import table_number  # what `score` and `watch` print too

    assert [table_number(v) for v in (4.174116, 0.000198198, 12345.678, None)] == ["4.17412", "0.000198198", "12345.7", ""]


def test_options_that_mean_nothing_for_the_source_are_refused_not_ignored(model_path, tmp_path):
    """--stride on a folder would judge every other part and pass the rest; --existing means nothing to a stream."""
    import insightad_edge

    folder = tmp_path / "incoming"
    folder.mkdir()
    strided = CliRunner().invoke(main, ["watch", str(folder), "--no-log", "--stride", "2"])
    assert strided.exit_code == 2 and "every file in a folder is a part" in strided.stderr
    existing = CliRunner().invoke(main, ["watch", "http://127.0.0.1:9/stream.mjpg", "--no-log", "--existing"])
    assert existing.exit_code == 2 and "only a folder" in existing.stderr
    keyless = CliRunner().invoke(main, ["watch", str(folder), "--no-log", "--api-key", "k"])  # a page never served
    assert keyless.exit_code == 2 and "needs --http" in keyless.stderr
    for option in (["--save-all"], ["--save-max-gb", "5"]):  # a budget for evidence nobody keeps
        unsaved = CliRunner().invoke(main, ["watch", str(folder), "--no-log", *option])
        assert unsaved.exit_code == 2 and "needs --save DIR" in unsaved.stderr
    with pytest.raises(ValueError, match="stride is for videos and streams"):
        next(insightad_edge.watch(folder, Detector(model_path), stride=3))


def test_a_mistyped_command_stops_before_the_line_starts_and_leaves_nothing_behind(model_path, tmp_path):
    """A mistyped source, a port that cannot exist, or a log both named and refused is a usage error before the
    model loads: no log file made, no table header on stdout for a script to take as the start of a run."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    log, notes = tmp_path / "line.db", tmp_path / "notes.txt"
    notes.write_text("a file, where --save wants a folder")
    for arguments, reason in (([str(tmp_path / "incomming")], "is neither a folder, a video file"),
                              ([str(folder), "--http", "127.0.0.1:99999"], "a port from 0 to 65535"),
                              ([str(folder), "--http", "8080"], "is not HOST:PORT"),
                              ([str(folder), "--no-log"], "that --no-log says not to keep"),
                              ([str(folder), "--save", str(notes / "evidence")], "cannot make folder")):
        result = CliRunner().invoke(main, ["watch", *arguments, "--model", str(model_path), "--log", str(log)])
        assert result.exit_code == 2 and reason in result.stderr, result.output
        assert result.stdout == "" and not log.exists()


def test_a_log_with_a_retention_period_deletes_older_verdicts_and_says_so(model_path, tmp_path):
    """A station on a live camera writes about 1 GB of log a day: a retention period keeps the disk from filling."""
    from insightad_edge.inspections import PRUNE_BATCH, InspectionLog, format_time

    log = tmp_path / "line.db"
    writer = InspectionLog(log)
    now = datetime.datetime.now(datetime.timezone.utc)
    for age_days, count in ((100, PRUNE_BATCH * 2 + 7), (10, 3)):  # more old rows than one delete takes
        for i in range(count):
            writer.record({"time": format_time(now - datetime.timedelta(days=age_days, seconds=i)), "source": "cam",
                           "frame": f"{age_days}-{i}", "status": "ok", "model": "m.onnx", "model_sha256": "abc"})
    writer.close()
    folder = tmp_path / "incoming"
    folder.mkdir()
    process = start_watch(folder, "--model", model_path, "--log", log, "--log-keep-days", "30", "--format", "jsonl")
    try:
        time.sleep(1.0)
        cv2.imwrite(str(folder / "part.png"), part_image(np.random.default_rng(21), 128)[0])
        assert len(lines_until(process, 1)) == 1
    finally:
        _, err = stop(process)
    assert "keeping 30 days" in err
    unkept = CliRunner().invoke(main, ["watch", str(folder), "--no-log", "--log-keep-days", "30"])
    assert unkept.exit_code == 2 and "no log to keep" in unkept.stderr
    forever = tmp_path / "forever.db"  # a horizon before the calendar began killed the writer: no verdict logged
    rng = np.random.default_rng(22)
    video = write_video(tmp_path / "line.avi", (part_image(rng, 128)[0] for _ in range(5)))
    kept = CliRunner().invoke(main, ["watch", str(video), "--model", str(model_path), "--log", str(forever),
                                     "--log-keep-days", "1000000"])
    assert kept.exit_code == 0 and len(rows_of(forever)) == 5, kept.output
    assert [r["frame"] for r in rows_of(log)] == ["10-0", "10-1", "10-2", str(folder.resolve() / "part.png")]
    with sqlite3.connect(log) as connection:
        pruned = connection.execute("SELECT message FROM events WHERE kind = 'pruned'").fetchall()
    assert len(pruned) == 1 and pruned[0][0].startswith(f"deleted {PRUNE_BATCH * 2 + 7} verdicts from before")


def test_a_log_another_program_locks_holds_the_verdicts_and_writes_them_when_it_can(tmp_path, monkeypatch, caplog):
    """A real write lock from a second connection (as a backup tool or an open sqlite3 shell holds one): the
    writer holds what it cannot write and writes it once the lock is gone; what never got in is counted."""
    from insightad_edge import inspections

    monkeypatch.setattr(inspections, "BUSY_S", 0.3)  # a line waits 5 s for a lock; this test need not
    monkeypatch.setattr(inspections, "RETRY_S", 0.3)
    path = tmp_path / "locked.db"
    writer = inspections.InspectionLog(path)

    def verdict(i):
        return {"time": f"2026-11-30T08:00:{i:02d}.000Z", "source": "cam", "frame": str(i), "status": "ok",
                "model": "m.onnx", "model_sha256": "abc"}

    def logged() -> int:
        with sqlite3.connect(path) as reader:
            return reader.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]

    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    for i in range(20):
        writer.record(verdict(i))
    time.sleep(1.5)  # several tries, each refused
    assert logged() == 0 and "holding verdicts in memory" in caplog.text
    locker.execute("ROLLBACK")
    writer.record(verdict(20))
    deadline = time.monotonic() + 10
    while logged() < 21 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logged() == 21
    locker.execute("BEGIN EXCLUSIVE")  # locked to the end: what is left is counted, not silently dropped
    for i in range(21, 26):
        writer.record(verdict(i))
    writer.close()
    locker.execute("ROLLBACK")
    assert writer.unwritten == 5 and logged() == 21


@pytest.mark.browser
def test_a_log_that_cannot_be_written_shows_on_the_page_and_in_metrics_while_it_lasts(model_path, tmp_path):
    """A full disk or a lock used to be seen only when the station stopped and counted what never got in: while
    it lasts, the page and /metrics say how many verdicts wait in memory; once it is gone, they are written."""
    import urllib.request

    from browser import open_page

    folder, log = tmp_path / "incoming", tmp_path / "line.db"
    folder.mkdir()
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", "--http", "127.0.0.1:0")
    try:
        base = announced_page(process)
        time.sleep(1.0)
        locker = sqlite3.connect(log, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another program holds the file (or the disk is full)
        rng = np.random.default_rng(27)
        for i in range(2):
            cv2.imwrite(str(folder / f"p{i}.png"), part_image(rng, 128)[0])
        assert len(lines_until(process, 2)) == 2
        with open_page(base + "/") as page:
            page.wait_for_function("document.getElementById('trouble').textContent.includes('2 verdicts wait')",
                                   timeout=30_000)
            held = [line for line in urllib.request.urlopen(base + "/metrics", timeout=10).read().decode().splitlines()
                    if line.startswith("insightad_log_held ")]
            assert held == ["insightad_log_held 2.0"]
            locker.execute("ROLLBACK")
            page.wait_for_function("document.getElementById('trouble').textContent === ''", timeout=30_000)
        assert len(rows_of(log)) == 2
    finally:
        stop(process)


def test_a_verdict_the_log_cannot_take_as_it_comes_costs_no_other(tmp_path):
    """A frame named with surrogates (a file name that is not UTF-8) made SQLite's insert fail outside what the
    writer expected: its transaction stayed open, and every later verdict was held in memory until the station
    stopped, none logged. The name is now kept as text SQLite takes, and whatever a record raises, the file is left
    as it was and the other records are written."""
    from insightad_edge.inspections import InspectionLog

    log = InspectionLog(tmp_path / "line.db")
    frames = ["before.png", os.fsdecode(b"pr\xfcfteil_\xe9.png"), "after.png"]
    for frame in frames:
        log.record({"time": "2026-11-30T08:00:00.000Z", "source": "share", "frame": frame, "status": "ok",
                    "model": "m.onnx", "model_sha256": "abc"})
    log.record({"time": "2026-11-30T08:00:01.000Z", "source": "share", "frame": "bad", "status": "ok",
                "model": "m.onnx", "model_sha256": "abc", "skipped": 2 ** 70})  # no SQLite integer holds it
    log.record({"time": "2026-11-30T08:00:02.000Z", "source": "share", "frame": "last.png", "status": "ok",
                "model": "m.onnx", "model_sha256": "abc"})
    time.sleep(1.0)
    assert log.seen("share", frames[1]) and log.held == 0
    log.close()
    assert [r["frame"] for r in rows_of(tmp_path / "line.db")] == ["before.png", "pr\\xfcfteil_\\xe9.png", "after.png",
                                                                   "last.png"]
    assert log.unwritten == 1  # the one record no file could take, counted


def test_a_log_made_in_one_thread_serves_a_station_in_another(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from insightad_edge.inspections import InspectionLog

    log = InspectionLog(tmp_path / "line.db")
    row = {"time": "2026-11-30T08:00:00.000Z", "source": "cam", "frame": "0", "status": "ok", "model": "m.onnx",
           "model_sha256": "abc"}
    with ThreadPoolExecutor(1) as station:
        assert station.submit(log.seen, "cam", "0").result() is False
        station.submit(log.record, row).result()
    log.close()
    assert len(rows_of(tmp_path / "line.db")) == 1


def test_a_log_that_cannot_be_opened_stops_watch_before_the_line_starts(model_path, tmp_path):
    (tmp_path / "notes.txt").write_text("not an inspection log")
    result = CliRunner().invoke(main, ["watch", str(tmp_path), "--model", str(model_path), "--log",
                                       str(tmp_path / "notes.txt")])
    assert result.exit_code == 2 and "cannot keep the inspection log" in result.stderr


def test_another_programs_database_given_as_the_log_is_refused_and_left_as_it_was(model_path, tmp_path):
    """`--log /var/lib/mes/line.db` by mistake: the station added its tables to that database, stamped its version
    and switched it to WAL (which that program's clients on a network share cannot use), and `log` listed nothing."""
    database = tmp_path / "mes.db"
    with contextlib.closing(sqlite3.connect(database)) as other:
        other.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, part TEXT)")
        other.execute("INSERT INTO orders (part) VALUES ('A-17')")
        other.commit()
    before = database.read_bytes()
    video = write_video(tmp_path / "line.avi", [part_image(np.random.default_rng(0), 128)[0]] * 2)
    watched = CliRunner().invoke(main, ["watch", str(video), "--model", str(model_path), "--log", str(database)])
    assert watched.exit_code == 2 and "another program's SQLite database (its tables: orders)" in watched.stderr
    listed = CliRunner().invoke(main, ["log", str(database)])
    assert listed.exit_code == 3 and "another program's SQLite database" in listed.stderr
    assert database.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["line.avi", "mes.db"]


def test_the_same_station_in_python_over_any_iterable_of_frames(model_path):
    """A GenICam camera's loop plugs in as an iterable; a frame without a part never ends the loop."""
    import insightad_edge

    rng = np.random.default_rng(6)
    frames = [part_image(rng, 128)[0], background(rng, 128, 128), part_image(rng, 128, defect=True)[0],
              b"not an image", part_image(rng, 128)[0]]
    verdicts = list(insightad_edge.watch(iter(frames), detector=Detector(model_path)))
    assert [v.status for v in verdicts] == ["ok", "not_inspectable", "defect", "error", "ok"]
    assert verdicts[1].anomaly is None and verdicts[1].error.startswith("not inspectable")
    assert "not a readable image" in verdicts[3].error
    assert [v.frame for v in verdicts] == ["0", "1", "2", "3", "4"]
    assert all(v.latency_ms >= 0 for v in verdicts)
    strided = list(insightad_edge.watch(iter(frames), detector=Detector(model_path), stride=2))
    assert [v.frame for v in strided] == ["0", "2", "4"]


def test_a_model_that_breaks_on_a_frame_gives_error_verdicts_never_ok(model_path, tmp_path):
    import insightad_edge
    from models import write_fragile_model

    fragile = Detector(write_fragile_model(tmp_path / "fragile.onnx", Detector(model_path).metadata))
    frames = [part_image(np.random.default_rng(seed), 128)[0] for seed in range(3)]
    verdicts = list(insightad_edge.watch(iter(frames), detector=fragile))
    assert [v.status for v in verdicts] == ["error"] * 3 and all(v.anomaly is None for v in verdicts)
    assert all("NaN or infinity" in v.error for v in verdicts)


def test_watch_serves_the_operators_page_health_and_metrics(model_path, tmp_path):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    folder = tmp_path / "incoming"
    folder.mkdir()
    process = start_watch(folder, "--model", model_path, "--log", tmp_path / "line.db", "--format", "jsonl",
                          "--http", "127.0.0.1:0")  # the system chooses the port, and watch names it
    try:
        base = announced_page(process)
        rng = np.random.default_rng(7)
        time.sleep(1.0)
        for i in range(3):
            cv2.imwrite(str(folder / f"p{i}.png"), part_image(rng, 128, defect=i == 2)[0])
        assert len(lines_until(process, 3)) == 3
        last = json.loads(urllib.request.urlopen(base + "/api/last", timeout=10).read())["last"]
        assert last["status"] == "defect" and last["overlay"].startswith("data:image/png;base64,")
        summary = json.loads(urllib.request.urlopen(base + "/api/summary", timeout=10).read())
        assert summary["last_hour"]["parts"] == 3 and summary["drift"]["level"] == "ok"
        assert json.loads(urllib.request.urlopen(base + "/health", timeout=10).read())["drift"]["parts"] == 3
        text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        counts = {s.labels["status"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
                  if s.name == "insightad_verdicts_total"}
        assert counts["defect"] == 1 and counts["ok"] == 2
        assert b"<title>insightad" in urllib.request.urlopen(base + "/", timeout=10).read()
    finally:
        stop(process)


def test_a_restarted_stations_page_counts_the_last_hour_its_log_holds(model_path, tmp_path):
    """Restarted (a crash, a reboot), the page's last hour is the log's for this source, not since the restart."""
    import urllib.request

    from insightad_edge.inspections import InspectionLog, format_time

    folder = tmp_path / "incoming"
    folder.mkdir()
    log = tmp_path / "line.db"
    now = datetime.datetime.now(datetime.timezone.utc)
    writer = InspectionLog(log)
    for minutes, status, source in ((50, "ok", folder), (9, "defect", folder), (5, "not_inspectable", folder),
                                    (90, "ok", folder), (3, "ok", "rtsp://another-camera")):
        writer.record({"time": format_time(now - datetime.timedelta(minutes=minutes)), "source": str(source),
                       "frame": f"earlier-{minutes}", "status": status, "threshold": 1.0, "model": "m.onnx",
                       "model_sha256": "abc", "skipped": 2})
    writer.close()
    http = free_port()
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", "--http", f"127.0.0.1:{http}")

    def get(route: str) -> dict:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http}{route}", timeout=10).read())

    try:
        deadline = time.monotonic() + 30
        while True:  # the page serves from the start; the source opens (and the log is read) just after
            with contextlib.suppress(OSError):
                if get("/health")["source"] == "live":
                    break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        hour = get("/api/summary")["last_hour"]
        assert (hour["parts"], hour["defects"], hour["not_inspectable"], hour["skipped"]) == (3, 1, 1, 6)
        cv2.imwrite(str(folder / "new.png"), part_image(np.random.default_rng(3), 128)[0])
        assert len(lines_until(process, 1)) == 1
        assert get("/api/summary")["last_hour"]["parts"] == 4
    finally:
        stop(process)


@pytest.mark.browser
def test_a_lost_camera_replaces_the_last_verdict_on_the_page_health_and_metrics(model_path, tmp_path):
    """A green OK from before the camera went must not stand on the line's screen; nor the camera's password."""
    import urllib.request

    from browser import open_page

    MJPEG.frames = jpegs(9, 5)
    port, http = free_port(), free_port()
    server = serve_mjpeg(port)
    process = start_watch(f"http://line:s3cret@127.0.0.1:{port}/stream.mjpg", "--model", model_path,
                          "--log", tmp_path / "line.db", "--format", "jsonl", "--http", f"127.0.0.1:{http}")
    base = f"http://127.0.0.1:{http}"

    def get(path: str):
        return urllib.request.urlopen(base + path, timeout=10).read().decode()

    def health_until(state: str) -> dict:
        deadline = time.monotonic() + 30
        while (health := json.loads(get("/health")))["source"] != state and time.monotonic() < deadline:
            time.sleep(0.2)
        return health

    try:
        assert len(lines_until(process, 3)) == 3
        assert health_until("live")["source"] == "live"
        with open_page(base + "/") as page:  # the line's screen, open through the loss and the return
            page.wait_for_selector('[data-status="ok"]')
            MJPEG.live.clear()  # the camera is unplugged
            server.shutdown()
            server.server_close()
            assert health_until("lost")["source"] == "lost"
            page.wait_for_selector('[data-status="source_down"]')
            assert page.inner_text("#verdict") == "NO VERDICT" and "CAMERA LOST since" in page.inner_text("#source")
            page.set_viewport_size({"width": 800, "height": 480})  # a 7" line-side panel: the camera's URL, one long
            box = page.locator("#source").bounding_box()           # word, wraps inside its box, not off the screen
            assert box["x"] + box["width"] <= 800 and page.evaluate("document.documentElement.scrollWidth") <= 800
            assert "insightad_source_up 0.0" in get("/metrics")
            before = page.inner_text("#caption")  # the last part judged before the loss
            summary = get("/api/summary")
            assert json.loads(summary)["source"]["state"] == "lost" and "s3cret" not in summary
            server = serve_mjpeg(port)
            assert health_until("live")["source"] == "live" and "insightad_source_up 1.0" in get("/metrics")
            page.wait_for_function("before => document.getElementById('caption').textContent !== before", arg=before)
            assert page.get_attribute("#verdict", "data-status") == "ok" and not page.is_visible("#source")
    finally:
        _, err = stop(process)
        server.shutdown()
        server.server_close()
    assert "s3cret" not in err and "line:***@" in err
    with sqlite3.connect(tmp_path / "line.db") as connection:
        assert not any("s3cret" in " ".join(map(str, row)) for table in ("events", "inspections")
                       for row in connection.execute(f"SELECT * FROM {table}"))


@pytest.mark.browser
def test_frames_a_busy_station_skips_are_counted_on_the_page_in_metrics_and_in_the_log(model_path, tmp_path,
                                                                                   monkeypatch):
    """A camera faster than the model: the frames dropped unjudged (parts, when each frame is one) must show."""
    import urllib.request

    from browser import chromium

    monkeypatch.setattr(MJPEG, "interval", 0.0005)
    MJPEG.frames = jpegs(12, 5)
    port, http = free_port(), free_port()
    server = serve_mjpeg(port)
    process = start_watch(f"http://127.0.0.1:{port}/stream.mjpg", "--model", model_path, "--log", tmp_path / "line.db",
                          "--format", "jsonl", "--http", f"127.0.0.1:{http}")
    base = f"http://127.0.0.1:{http}"
    try:
        assert len(lines_until(process, 20)) == 20
        MJPEG.live.clear()  # the camera stops: no verdict after the source is lost
        server.shutdown()
        server.server_close()
        deadline = time.monotonic() + 30
        while json.loads(urllib.request.urlopen(base + "/health", timeout=10).read())["source"] != "lost":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        on_page = json.loads(urllib.request.urlopen(base + "/api/summary", timeout=10).read())["last_hour"]["skipped"]
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        dom = chromium("--dump-dom", base + "/")
    finally:
        stop(process)
    with sqlite3.connect(tmp_path / "line.db") as connection:
        logged = connection.execute("SELECT total(skipped) FROM inspections").fetchone()[0]
    assert on_page > 0 and on_page == logged and f'<dd id="skipped">{on_page}</dd>' in dom
    assert f"insightad_frames_skipped_total {float(logged)}" in metrics


def test_a_dimming_lamp_becomes_a_drift_event_in_the_log(model_path, tmp_path):
    rng = np.random.default_rng(8)
    frames = (part_image(rng, 128)[0] for _ in range(100))
    write_video(tmp_path / "line.avi", (frame if i < 40 else (frame * 0.6).astype(np.uint8)  # the lamp loses 40%
                                        for i, frame in enumerate(frames)))  # after part 40
    log = tmp_path / "line.db"
    done = CliRunner().invoke(main, ["watch", str(tmp_path / "line.avi"), "--model", str(model_path), "--log",
                                     str(log), "--format", "jsonl"])
    assert done.exit_code == 0, done.output
    with sqlite3.connect(log) as connection:
        drift = connection.execute("SELECT message FROM events WHERE kind = 'drift' ORDER BY id").fetchall()
    assert drift and drift[-1][0].startswith("drift alarm") and "darker than any training image" in drift[-1][0]
    assert "drift: drift alarm" in done.stderr


@pytest.mark.browser
def test_a_station_that_stops_moving_says_so_on_its_page_and_in_its_log(model_path, tmp_path):
    """A sink that blocks (`watch ... | consumer` and the consumer stops reading: a full pipe), like a listing hung
    on a network share, leaves the loop stuck while the page showed a live source and its last green verdict.
    Now the stall is an event after STALL_S: NO VERDICT on the page, source_up 0, in the log, and no more pings
    for systemd's watchdog (which restarts the station after WatchdogSec); and when the loop moves again, it says
    so, pings again and judges every part."""
    import urllib.request

    from browser import open_page
    from test_service import NotifySocket

    from insightad_edge.station import STALL_S

    folder, log = tmp_path / "incoming", tmp_path / "line.db"
    folder.mkdir()
    systemd = NotifySocket(tmp_path / "notify")
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", "--http", "127.0.0.1:0",
                          env={"NOTIFY_SOCKET": str(systemd.path)})
    base = announced_page(process)

    def health_until(state: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (found := json.loads(urllib.request.urlopen(base + "/health", timeout=10).read())["source"]) != state \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        return found

    try:
        assert health_until("live", 30) == "live"
        rng = np.random.default_rng(21)
        image = cv2.imencode(".png", part_image(rng, 128)[0])[1].tobytes()
        for i in range(600):  # about twice what the 64 KB pipe holds in JSON lines, which nobody reads yet
            (folder / f"p{i:03d}.png").write_bytes(image)
        assert health_until("stalled", STALL_S + 30) == "stalled"
        stalled_at = time.monotonic()
        with open_page(base + "/") as page:
            page.wait_for_selector('[data-status="source_down"]')
            assert "STATION STALLED since" in page.inner_text("#source")
        assert "insightad_source_up 0.0" in urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        assert not systemd.said("WATCHDOG=1", since=stalled_at)  # no ping while stalled: systemd would restart it
        rows = lines_until(process, 600, timeout=60)  # the reader comes back
        assert health_until("live", 30) == "live"
        resumed_at = time.monotonic()
        deadline = resumed_at + 10
        while not systemd.said("WATCHDOG=1", since=resumed_at) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert systemd.said("WATCHDOG=1", since=resumed_at)
    finally:
        _, err = stop(process)
        systemd.close()
    assert len(rows) == 600 and len(rows_of(log)) == 600
    assert "stalled: the station has not moved for" in err and "resumed: the station moves again" in err
    kinds = events_of(log)
    assert kinds.index("stalled") < kinds.index("resumed")


def test_a_stop_in_a_burst_of_files_comes_at_once_and_the_rest_are_judged_after_a_restart(model_path, tmp_path):
    """Two thousand files waiting at once (a station started on a full folder, or back after an hour down): Ctrl-C
    or systemctl stop used to wait until every one was judged (systemd kills after 90 s); now it stops within the
    next file, and the next station judges the files this one did not."""
    folder, log = tmp_path / "incoming", tmp_path / "line.db"
    folder.mkdir()
    image = cv2.imencode(".png", part_image(np.random.default_rng(22), 128)[0])[1].tobytes()
    for i in range(2000):
        (folder / f"p{i:04d}.png").write_bytes(image)
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", "--existing")
    assert len(lines_until(process, 20)) == 20
    stop(process)
    judged = len(rows_of(log))
    assert judged < 1000  # the 20 read and the few hundred the pipe held, not all 2000 (measured: 2000 before)
    again = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", "--existing")
    assert len(lines_until(again, 2000 - judged, timeout=120)) == 2000 - judged
    stop(again)
    frames = [r["frame"] for r in rows_of(log)]
    assert len(frames) == len(set(frames)) == 2000


def test_a_second_station_on_the_same_log_is_refused_before_its_line_starts(model_path, tmp_path):
    """A systemd station and one started by hand on the same folder and log judged each part twice and logged it
    twice, in silence (5 parts, 10 rows). The log is claimed by its station (flock, dropped with the process even
    on kill -9): the second is refused, and a station after the first one's end, however it ended, starts."""
    folder, log = tmp_path / "incoming", tmp_path / "line.db"
    folder.mkdir()
    first = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    try:
        while "logging every verdict to" not in (line := first.stderr.readline()):  # the claim is taken by now
            assert line, "the first station ended"
        second = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2 and out == "", err
        assert f"another station is logging to {log}" in err
        rng = np.random.default_rng(23)
        time.sleep(1.0)
        for i in range(5):
            cv2.imwrite(str(folder / f"p{i}.png"), part_image(rng, 128)[0])
        assert len(lines_until(first, 5)) == 5
    finally:
        first.kill()  # kill -9: the system drops the claim
        first.wait(timeout=30)
    logged = len(rows_of(log))  # kill -9 takes back the last quarter second: those parts are judged again below
    third = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    time.sleep(1.0)
    cv2.imwrite(str(folder / "p5.png"), part_image(np.random.default_rng(24), 128)[0])
    assert len(lines_until(third, 6 - logged)) == 6 - logged
    stop(third)
    frames = [r["frame"] for r in rows_of(log)]
    assert len(frames) == len(set(frames)) == 6


def test_a_log_moved_away_or_deleted_while_the_station_runs_starts_anew_at_its_path(model_path, tmp_path):
    """Deleted (to free a full disk, which it does not while the station holds it) or moved away (to keep a month
    apart), the log went on receiving every verdict in a file nobody could open any more, in silence. Now the
    station starts a new log at its path at once, says so there and on stderr, and the moved file keeps its own."""
    folder, log, kept = tmp_path / "incoming", tmp_path / "line.db", tmp_path / "november.db"
    folder.mkdir()
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    rng = np.random.default_rng(25)

    def parts(names):
        for name in names:
            cv2.imwrite(str(folder / name), part_image(rng, 128)[0])
        assert len(lines_until(process, len(names))) == len(names)
        time.sleep(0.5)  # two commits: the verdicts are in the file

    try:
        time.sleep(1.0)
        parts(["a0.png", "a1.png"])
        log.rename(kept)
        parts(["b0.png", "b1.png"])
        log.unlink()
        parts(["c0.png"])
    finally:
        _, err = stop(process)
    assert err.count("a new one starts here") == 2
    assert [Path(r["frame"]).name for r in rows_of(kept)] == ["a0.png", "a1.png"]
    assert [Path(r["frame"]).name for r in rows_of(log)] == ["c0.png"]
    assert events_of(log)[0] == "new_log" and events_of(log)[-1] == "stop"
    with sqlite3.connect(kept) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_log_that_cannot_start_anew_holds_the_verdicts_until_it_can(tmp_path, monkeypatch):
    """The log moved away and its path taken (here by a folder): the verdicts wait in memory, counted, and reach
    the new file once the path is free; the moved file holds what it had, whole."""
    from insightad_edge import inspections

    monkeypatch.setattr(inspections, "RETRY_S", 0.2)
    path = tmp_path / "line.db"
    writer = inspections.InspectionLog(path)
    writer.event("start", "before the move")
    deadline = time.monotonic() + 10
    while not rows_of_events(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    path.rename(tmp_path / "moved.db")
    path.mkdir()
    for i in range(5):
        writer.record({"time": f"2026-11-30T08:00:0{i}.000Z", "source": "cam", "frame": str(i), "status": "ok",
                       "model": "m.onnx", "model_sha256": "abc"})
    while writer.held < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.held == 5
    path.rmdir()
    while writer.held and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()
    assert writer.unwritten == 0 and [r["frame"] for r in rows_of(path)] == ["0", "1", "2", "3", "4"]
    assert events_of(path) == ["new_log"] and events_of(tmp_path / "moved.db") == ["start"]


def rows_of_events(log: Path) -> list[str]:
    try:
        return events_of(log)
    except sqlite3.OperationalError:  # the schema is not committed yet
        return []


def test_files_not_named_as_images_are_said_to_be_unjudged_once_per_kind(model_path, tmp_path):
    """A camera set to write another format, or names without a suffix, left the station watching in silence
    while no part was judged. Each kind of file it does not judge is now named once, on stderr, in the log and on
    the page, once a file of it has stayed a few seconds: an upload under a temporary name (WinSCP's .filepart)
    renamed at once to an image was named too, a false alarm in red until the station stopped. Windows Explorer's
    own files (Thumbs.db) are never named: they are not parts."""
    import urllib.request

    from insightad_edge.folders import IGNORED_AFTER_S

    folder, log = tmp_path / "incoming", tmp_path / "line.db"
    folder.mkdir()
    png = cv2.imencode(".png", part_image(np.random.default_rng(29), 128)[0])[1].tobytes()
    for name in ("0001", "0002", "a.raw", ".hidden", "Thumbs.db", "desktop.ini"):
        (folder / name).write_bytes(png)
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", "--http", "127.0.0.1:0")
    base = announced_page(process)

    def trouble_until(count: int) -> list[str]:
        deadline = time.monotonic() + 3 * IGNORED_AFTER_S
        while len(found := json.loads(urllib.request.urlopen(base + "/api/summary", timeout=10).read())["trouble"]) \
                < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return found

    assert len(trouble_until(1)) == 1
    for i in range(3):  # uploads under a temporary name, each renamed once whole
        (folder / f"up{i}.png.filepart").write_bytes(png)
        time.sleep(0.5)
        (folder / f"up{i}.png.filepart").rename(folder / f"up{i}.png")
    (folder / "b.raw").write_bytes(png)  # a kind already named: not again
    (folder / "a.xml").write_text("<part/>")
    assert len(lines_until(process, 3)) == 3
    trouble = trouble_until(2)
    time.sleep(IGNORED_AFTER_S)  # time for a wrong third
    _, err = stop(process)
    said = [line for line in err.splitlines() if line.startswith("ignored:")]
    assert len(said) == 2 and events_of(log).count("ignored") == 2, err
    assert [f"ignored: {line}" for line in trouble] == said  # and on the page, until the station stops
    assert "no suffix (0001)" in said[0] and ".raw (a.raw)" in said[0]
    assert ".xml (a.xml)" in said[1] and ".raw" not in said[1]
    assert not any(word in line for line in said for word in ("hidden", ".filepart", ".db", ".ini")), said


def test_another_model_put_where_the_stations_model_was_is_said_not_silently_unused(model_path, tmp_path):
    """An engineer exports a new model to the running station's --model path and believes it judges; the station
    goes on with the one it loaded (as it should: a half-copied file must not judge), and used to say nothing.
    Now the change is an event (stderr, log) and stays on the page until the file holds the model in service
    again; the verdicts meanwhile name the model that gave them."""
    import urllib.request

    from models import make_onnx_model

    from insightad_edge.metadata import ModelMetadata

    folder, log, model = tmp_path / "incoming", tmp_path / "line.db", tmp_path / "part.onnx"
    folder.mkdir()
    shutil.copy2(model_path, model)
    in_service = Detector(model).sha256
    other = json.loads(Detector(model_path).metadata.to_json())
    other["threshold"]["value"] *= 1.5
    newer = make_onnx_model(tmp_path / "newer.onnx", ModelMetadata.from_json(json.dumps(other)))
    process = start_watch(folder, "--model", model, "--log", log, "--format", "jsonl", "--http", "127.0.0.1:0")
    base = announced_page(process)

    def trouble_until(wanted, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while not wanted(found := json.loads(urllib.request.urlopen(base + "/api/summary", timeout=10).read())["trouble"]) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        return found

    def metrics_until(line: str, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while line not in urllib.request.urlopen(base + "/metrics", timeout=10).read().decode().splitlines():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    rng = np.random.default_rng(31)
    try:
        assert metrics_until("insightad_model_file_current 1.0")  # its sinks join the page as the line starts
        shutil.copy(newer, model)  # the new export lands where the station's model was
        assert any("holds another model now" in t for t in trouble_until(bool))
        assert metrics_until("insightad_model_file_current 0.0")
        cv2.imwrite(str(folder / "p0.png"), part_image(rng, 128)[0])
        assert len(lines_until(process, 1)) == 1
        shutil.copy(model_path, model)  # put back
        assert trouble_until(lambda t: not t) == []
        model.unlink()
        assert any("is gone" in t for t in trouble_until(bool))
    finally:
        _, err = stop(process)
    assert "model_changed: " + str(model) + " holds another model now: this station still judges with the model it " \
           "loaded (sha256 " + in_service[:12] + "); restart it to use the new one" in err
    assert f"model_changed: {model} holds the model in service again" in err
    assert f"model_changed: {model} is gone" in err
    assert events_of(log).count("model_changed") == 3
    assert [r["model_sha256"] for r in rows_of(log)] == [in_service]


def test_a_macs_and_a_nass_own_files_beside_the_parts_are_not_parts(model_path, tmp_path):
    """A share or a stick a Mac writes to holds a `._p.png` of its own beside each picture (AppleDouble: not an
    image): each became an error verdict five seconds after its part, and errors on the page. A Synology share
    makes an `@eaDir` of thumbnails in the folder: it was announced in red as a subfolder whose images go
    unjudged. Hidden files and the system's own folders are now no parts and no news."""
    from insightad_edge.folders import UNREADABLE_AFTER_S

    folder, log = tmp_path / "incoming", tmp_path / "line.db"
    folder.mkdir()
    rng = np.random.default_rng(33)
    pngs = [cv2.imencode(".png", part_image(rng, 128)[0])[1].tobytes() for _ in range(2)]  # two parts, two pictures
    png = pngs[0]
    process = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl")
    try:
        time.sleep(1.0)
        for i in range(2):
            (folder / f"p{i}.png").write_bytes(pngs[i])
            (folder / f"._p{i}.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000))
        for system in ("@eaDir", ".thumbnails"):
            (folder / system / "p0.png").mkdir(parents=True)
            (folder / system / "p0.png" / "SYNOFILE_THUMB_M.png").write_bytes(png)
        rows = lines_until(process, 3, timeout=UNREADABLE_AFTER_S + 5)
    finally:
        _, err = stop(process)
    assert sorted(Path(r["frame"]).name for r in rows) == ["p0.png", "p1.png"]
    assert all(r["error"] is None for r in rows_of(log))
    assert "unwatched" not in err and "ignored" not in err, err


def conveyor(rng) -> tuple[list, list[str]]:
    """A free-running camera over a belt (128x128 frames): the frames, and the rows a station should keep, one
    per part: a good part passing, a scratched one, two touching parts (the next comes in as the first leaves),
    one that passes cut by the frame's edge throughout, a lamp that goes out over the empty belt (a row per
    frame: the camera's fault, not an empty belt), and a part still in view when the video ends."""
    def passing(tile, top=None, stop=75):
        return [embed(tile, rng, SIDE, SIDE, top=top, left=dx) for dx in range(-70, stop, 5)]

    def empty(count):
        return [background(rng, SIDE, SIDE) for _ in range(count)]

    good, scratched = part_image(rng, SIDE, angle=0.0)[0], part_image(rng, SIDE, angle=0.0, defect=True)[0]
    first, second = part_image(rng, SIDE, angle=0.0)[0], part_image(rng, SIDE, angle=0.0)[0]
    touching = [np.minimum(frame, embed(second, rng, SIDE, SIDE, left=dx - 120)) if dx > 40 else frame
                for dx, frame in zip(range(-70, 75, 5), passing(first))] + passing(second)[1:]
    dark = [np.clip(background(rng, SIDE, SIDE) * 0.1, 0, 255).astype(np.uint8) for _ in range(3)]
    frames = (empty(5) + passing(good) + empty(5) + passing(scratched) + empty(4) + touching + empty(4)
              + passing(good, top=60) + empty(4) + dark + empty(3) + passing(good, stop=10))
    return frames, ["ok", "defect", "ok", "ok", "not_inspectable", "not_inspectable", "not_inspectable",
                    "not_inspectable", "ok"]


SIDE = 128


def test_a_free_running_camera_gives_one_verdict_per_part_not_one_per_frame(model_path):
    """A camera over a conveyor sees each part for many frames and the empty belt between them: judged frame by
    frame, 190 frames gave 157 rows without a verdict (the belt, parts coming in cut by the edge) and several
    verdicts per part. With per_part, each part gets one verdict, from the frame where it sits nearest where the
    training parts sat; the empty belt gets none; a part never whole in view, and a lamp gone out, say why."""
    import insightad_edge

    detector = Detector(model_path)
    frames, expected = conveyor(np.random.default_rng(3))
    every = [v.status for v in insightad_edge.watch(iter(frames), detector)]
    assert every.count("not_inspectable") > 100 and every.count("ok") + every.count("defect") > 20
    parts = list(insightad_edge.watch(iter(frames), detector, per_part=True))
    assert [v.status for v in parts] == expected
    assert "no frame of this part could be judged; where it sat best, the part is cut by the frame's edge" \
        in parts[4].error
    assert all("too dark" in v.error for v in parts[5:8])
    judged = [v for v in parts if v.score is not None]
    home = np.median(detector.metadata.calibration.stats["part_x"])
    assert all(abs(v.result.stats.part_x - home) < 0.05 for v in judged)  # seen where the model knows it best


def test_parts_never_whole_in_view_are_said_every_few_seconds_not_kept_silent(model_path):
    """Touching parts that are never whole in view make one unbroken run of frames with none judged: without a
    limit, no row would come while they pass."""
    from insightad_edge.passages import PART_MAX_S, Passages
    from insightad_edge.frames import Frame
    from insightad_edge.station import judge

    detector = Detector(model_path)
    rng = np.random.default_rng(4)
    tile = part_image(rng, SIDE, angle=0.0)[0]
    now = [0.0]
    passages = Passages(detector.metadata, clock=lambda: now[0])
    kept = []
    for i in range(40):  # 40 frames a second apart, each cut by the edge
        now[0] = float(i)
        kept += passages.feed(judge(detector, Frame("belt", str(i), image=embed(tile, rng, SIDE, SIDE, left=-30))))
    assert len(kept) == 40 // (PART_MAX_S + 1) and all(v.status == "not_inspectable" for v in kept)


def test_a_signal_stops_a_station_whatever_its_loop_is_doing():
    """The station's SIGINT/SIGTERM handler set its stop flag itself. A handler runs in the main thread, maybe
    inside the flag's own wait, holding the lock that setting it takes: the station then hung for good on Ctrl-C or
    `systemctl stop` (it did once in a CI run; a loop that waits on the flag while signals arrive hangs within 50
    signals that way). Here 300 signals, each at a random moment of such a loop, stop it 300 times."""
    race = textwrap.dedent("""
        import os, random, signal, threading
        from insightad_edge.frames import Stop
        for _ in range(300):
            stop = Stop()
            stop.on_signals(signal.SIGUSR1)
            threading.Timer(random.uniform(0, 0.002), os.kill, (os.getpid(), signal.SIGUSR1)).start()
            while not stop.wait(0.0):
                pass
        print("stopped 300 times")
    """)
    done = subprocess.run([sys.executable, "-c", race], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "stopped 300 times" in done.stdout, done.stderr


def test_a_part_in_view_when_the_station_stalls_is_not_merged_with_the_next_one(model_path):
    """A model call starved of the CPU (a backup job on the line PC), or a sink that blocks, stops the station
    looking at a live camera while a part is in view: when it looks again the next part is there, and its frames
    continued the passage: one verdict for two parts. A frame read STALL_S after the last, with frames dropped
    between, now ends the passage, as a lost camera does."""
    from insightad_edge.frames import Frame
    from insightad_edge.passages import Passages
    from insightad_edge.station import STALL_S, judge

    detector = Detector(model_path)
    rng = np.random.default_rng(24)
    good, scratched = (part_image(rng, SIDE, angle=0.0, defect=d)[0] for d in (False, True))
    frames = [Frame("cam", str(i), image=good, read_at=i * 0.04) for i in range(5)]
    frames += [Frame("cam", str(305 + i), image=scratched, read_at=STALL_S + 0.2 + i * 0.04, skipped=300 if i == 0 else 0)
               for i in range(5)]
    frames += [Frame("cam", str(310 + i), image=background(rng, SIDE, SIDE), read_at=STALL_S + 0.5 + i * 0.04)
               for i in range(3)]
    passages = Passages(detector.metadata)
    kept = [v for frame in frames for v in passages.feed(judge(detector, frame))]
    assert [(v.status, int(v.frame) < 300) for v in kept] == [("ok", True), ("defect", False)]
    slow = [dataclasses.replace(f, image=good, skipped=0) for f in frames]  # a video's frames wait for the station,
    passages = Passages(detector.metadata)                                   # however long it looks away: one part
    kept = [v for frame in slow[:10] for v in passages.feed(judge(detector, frame))] + passages.end()
    assert [v.status for v in kept] == ["ok"]


def test_a_part_in_view_when_the_camera_is_lost_is_not_merged_with_the_next_one(model_path, monkeypatch):
    """An indexing conveyor holds each part still under a free-running camera. When the camera dropped, the part
    in view then had left when it was back, and the next part's frames joined its passage: one verdict for two
    parts, the defective one passed without a row. A loss now ends the passage: each part gets its verdict."""
    import insightad_edge
    from insightad_edge import streams
    from insightad_edge.frames import Stop
    from rtsp import RTSPCamera

    monkeypatch.setattr(streams, "STREAM_TIMEOUT_MS", 1500)  # the same story in less time
    rng = np.random.default_rng(23)

    def held(defect: bool) -> list:  # a part standing under the camera: its frames differ by the sensor's noise
        part = part_image(rng, SIDE, angle=0.0, defect=defect)[0].astype(np.float32)
        return [cv2.cvtColor(np.clip(part + rng.normal(0, 2, part.shape), 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
                for _ in range(5)]

    camera = RTSPCamera(held(defect=False), fps=25)
    scratched = held(defect=True)

    def next_part():  # the camera hangs; meanwhile the good part moves on and a scratched one comes under it
        camera.hang(3.0)
        camera.frames = scratched

    threading.Timer(2.5, next_part).start()
    stop, events = Stop(), []
    threading.Timer(9.0, stop.set).start()
    try:
        parts = list(insightad_edge.watch(f"rtsp://127.0.0.1:{camera.port}/line", Detector(model_path), stop=stop,
                                          per_part=True, on_event=events.append))
    finally:
        camera.close()
    assert [e.kind for e in events] == ["opened", "lost", "reopened"]
    assert [v.status for v in parts] == ["ok", "defect"], [(v.status, v.frame) for v in parts]
    assert int(parts[0].frame) < int(parts[1].frame)


def test_one_verdict_per_part_from_a_video_on_the_command_line(model_path, v1_model_path, tmp_path):
    """`watch VIDEO --per-part` as a line runs it: the log holds one row per part; a folder (each file a part
    already) and a model that finds no part in a frame are refused before the line starts."""
    frames, expected = conveyor(np.random.default_rng(3))
    video = write_video(tmp_path / "belt.mkv", frames)
    log = tmp_path / "line.db"
    done = subprocess.run([sys.executable, "-m", "insightad_edge.cli", "watch", str(video), "--model", str(model_path),
                           "--log", str(log), "--format", "jsonl", "--per-part"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == expected
    assert [r["status"] for r in rows_of(log)] == expected
    assert f"watch stopped: {len(expected)} parts: 4 ok, 1 defects, 4 not inspectable" in done.stderr
    for source, model, hint in ((tmp_path, model_path, "a part of its own"),
                                (video, v1_model_path, "finds a part in the frame")):
        refused = CliRunner().invoke(main, ["watch", str(source), "--model", str(model), "--no-log", "--per-part"])
        assert refused.exit_code == 2 and hint in refused.output, refused.output


def test_a_camera_writing_into_a_folder_of_the_day_is_followed_with_recursive(model_path, tmp_path):
    """A camera that writes into a folder of the day could not be watched: from the parent its images went
    unjudged (and an `unwatched` event said so), on today's folder the station went quiet at midnight. With
    --recursive the parent's subfolders are watched too: a new day's folder is followed at once, a restart judges
    what came meanwhile in any of them and nothing twice, and the system's own folders (a NAS's thumbnails) are
    no parts."""
    folder, log = tmp_path / "camera", tmp_path / "line.db"
    (folder / "2026-11-29").mkdir(parents=True)
    rng = np.random.default_rng(35)
    png = cv2.imencode(".png", part_image(rng, 128)[0])[1].tobytes()
    first = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", "--recursive")
    try:
        time.sleep(1.0)
        (folder / "2026-11-29" / "late.png").write_bytes(png)
        (folder / "2026-11-30").mkdir()  # midnight
        (folder / "2026-11-30" / "first.png").write_bytes(png)
        (folder / "2026-11-30" / "@eaDir" / "first.png").mkdir(parents=True)
        (folder / "2026-11-30" / "@eaDir" / "first.png" / "SYNOFILE_THUMB_M.png").write_bytes(png)
        rows = lines_until(first, 2)
        time.sleep(1.0)  # committed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    (folder / "2026-11-30" / "while_down.png").write_bytes(png)
    (folder / "2026-12-01").mkdir()
    (folder / "2026-12-01" / "next_day.png").write_bytes(png)
    again = start_watch(folder, "--model", model_path, "--log", log, "--format", "jsonl", "--recursive")
    try:
        rows += lines_until(again, 2)
        time.sleep(1.5)  # time for a wrong third
        rows += lines_until(again, 1, timeout=0.5)
    finally:
        _, err = stop(again)
    assert sorted(Path(r["frame"]).relative_to(folder).as_posix() for r in rows) == [
        "2026-11-29/late.png", "2026-11-30/first.png", "2026-11-30/while_down.png", "2026-12-01/next_day.png"]
    assert "unwatched" not in err and "(and 2 that came while no station watched it)" in err
    refused = CliRunner().invoke(main, ["watch", str(write_video(tmp_path / "v.mkv", [background(rng, 128, 128)])),
                                        "--model", str(model_path), "--no-log", "--recursive"])
    assert refused.exit_code == 2 and "only a folder has subfolders" in refused.output


def test_a_stations_own_log_and_evidence_in_the_folder_it_watches_are_not_parts(model_path, tmp_path):
    """Started in the camera's folder (`cd /line && insightad-edge watch .`), a station named its own log among
    the files it does not judge, in red on the page until it stopped; with its evidence in a subfolder of a tree
    it watched, it judged the pictures it had saved, and their overlays, and saved those again: hundreds of rows a
    minute from one part. Its own files are now left alone, and evidence kept in a folder that holds the watched
    one is refused before the line starts."""
    from insightad_edge.folders import IGNORED_AFTER_S

    folder = tmp_path / "camera"
    (folder / "2026-12-01").mkdir(parents=True)
    rng = np.random.default_rng(41)
    process = start_watch(".", "--model", model_path, "--log", "line.db", "--recursive", "--save", "evidence",
                          "--save-all", "--format", "jsonl", cwd=folder)
    try:
        time.sleep(1.0)
        for name in ("p1.png", "p2.png"):
            cv2.imwrite(str(folder / "2026-12-01" / name), part_image(rng, 128)[0])
        rows = lines_until(process, 2)
        time.sleep(IGNORED_AFTER_S + 1.0)  # time for the log to be named, and for the evidence to be judged
        rows += lines_until(process, 1, timeout=0.5)
    finally:
        _, err = stop(process)
    assert [Path(r["frame"]).name for r in rows] == ["p1.png", "p2.png"], rows
    assert "ignored" not in err and "unwatched" not in err, err
    assert len(list((folder / "evidence").rglob("*.png"))) == 4  # each part and its overlay, once
    for evidence in (tmp_path, folder):  # the folder that holds the watched one, and the watched one itself
        refused = CliRunner().invoke(main, ["watch", str(folder), "--model", str(model_path), "--no-log",
                                            "--save", str(evidence)])
        assert refused.exit_code == 2 and "the pictures it saves would come among the parts" in refused.output


def test_a_month_of_day_folders_is_not_listed_again_at_every_look(tmp_path, monkeypatch):
    """Watched with --recursive, a parent of thirty day folders of a thousand files would be thirty listings a
    second; a folder unchanged for a minute is listed again only when its modification time changes. A day folder
    that cannot be read for a moment (a share's hiccup; as root no folder can be made unreadable, so the listing
    is made to fail) keeps its files, which are not parts taken away, to be judged again when it is back."""
    from insightad_edge import folders

    root = tmp_path / "camera"
    for day in range(30):
        (root / f"2026-11-{day + 1:02d}").mkdir(parents=True)
        (root / f"2026-11-{day + 1:02d}" / "p.png").write_bytes(b"png")
        month_ago = time.time() - 86400 * (30 - day)
        os.utime(root / f"2026-11-{day + 1:02d}", (month_ago, month_ago))
    listed = []
    real = folders._listing
    monkeypatch.setattr(folders, "_listing", lambda folder, own: listed.append(folder.name) or real(folder, own))
    tree = folders.Tree(root)
    assert len(tree.listing()[0]) == 30 and len(listed) == 31
    listed.clear()
    (root / "2026-11-30" / "q.png").write_bytes(b"png")  # today's folder changes
    assert len(tree.listing()[0]) == 31 and sorted(listed) == ["2026-11-30", "camera"]
    monkeypatch.setattr(folders, "_listing", lambda folder, own: None if folder.name == "2026-11-30" else real(folder, own))
    assert len(tree.listing()[0]) == 31  # unreadable for a moment: its two files are still there
    shutil.rmtree(root / "2026-11-30")
    assert len(tree.listing()[0]) == 29  # gone: so are its files
