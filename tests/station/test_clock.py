"""A station on a PC whose clock is wrong says so, and its verdicts survive the clock being set right.

The station runs under libfaketime (Debian's faketime), which moves the wall clock the process reads while its
monotonic clock runs on, as a clock battery gone flat and a clock set later do; what the clock reads is changed
mid-run through a file, as `timedatectl set-time` changes it."""
import dataclasses
import datetime
import glob
import json
import sqlite3
import urllib.request

import cv2
import numpy as np
import pytest

from insightad_edge.clock import LogClock
from insightad_edge.inspections import InspectionLog, format_time
from models import rewritten
from synthetic import part_image
from test_watch import announced_page, lines_until, rows_of, start_watch, stop

DAYS_BACK = 6200  # a clock battery gone flat: the firmware's date, 17 years back


def faketime_env(spec) -> dict:
    """The environment that makes a process read its wall clock as SPEC says (a file: changed while it runs)."""
    library = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not library:
        pytest.fail("a wrong clock needs libfaketime: apt-get install faketime (.ci/run installs it)")
    return {"LD_PRELOAD": library[0], "FAKETIME_TIMESTAMP_FILE": str(spec), "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def scraped(base: str, name: str) -> float:
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


def test_a_wrong_clock_is_said_and_its_verdicts_outlive_the_retention_period_once_it_is_set(model_path, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    model = rewritten(model_path, tmp_path / "part.onnx",
                      lambda meta: dataclasses.replace(meta, created=now.isoformat(timespec="seconds")))
    folder, log, spec = tmp_path / "incoming", tmp_path / "line.db", tmp_path / "clock"
    folder.mkdir()
    old = InspectionLog(log)  # a verdict of an earlier model, truly 100 days old: the retention period takes it
    old.record({"time": format_time(now - datetime.timedelta(days=100)), "source": "cam", "frame": "old",
                "status": "ok", "model": "old.onnx", "model_sha256": "0ld"})
    old.close()
    rng = np.random.default_rng(41)
    for i in range(2):
        cv2.imwrite(str(folder / f"p{i}.png"), part_image(rng, 128)[0])
    spec.write_text(f"-{DAYS_BACK}d")
    back = str((now - datetime.timedelta(days=DAYS_BACK)).year)
    process = start_watch(folder, "--existing", "--model", model, "--log", log, "--log-keep-days", "30",
                          "--format", "jsonl", "--http", "127.0.0.1:0", env=faketime_env(spec))
    try:
        base = announced_page(process)
        assert [row["time"][:4] for row in lines_until(process, 2)] == [back, back]
        trouble = json.loads(urllib.request.urlopen(f"{base}/api/summary", timeout=10).read())["trouble"]
        assert any(f"clock reads {back}" in line and "before the model it runs was made" in line for line in trouble)
        assert scraped(base, "insightad_log_clock_wrong") == 1.0

        spec.write_text("+0")  # the clock is set right
        cv2.imwrite(str(folder / "p2.png"), part_image(rng, 128)[0])
        assert lines_until(process, 1)[0]["time"][:4] == str(now.year)
        assert not json.loads(urllib.request.urlopen(f"{base}/api/summary", timeout=10).read())["trouble"]
        assert scraped(base, "insightad_log_clock_wrong") == 0.0
    finally:
        _, err = stop(process)
    assert f"WARNING the PC's clock reads {back}" in err and "timedatectl" in err

    restarted = start_watch(folder, "--model", model, "--log", log, "--log-keep-days", "30", "--format", "jsonl")
    cv2.imwrite(str(folder / "p3.png"), part_image(rng, 128)[0])  # the retention period is applied as it starts
    try:
        assert len(lines_until(restarted, 1)) == 1
    finally:
        stop(restarted)
    frames = [row["frame"].rsplit("/", 1)[-1] for row in rows_of(log)]
    assert frames == ["p0.png", "p1.png", "p2.png", "p3.png"], frames  # the 100-day-old one went, the misdated stay
    assert [row["time"][:4] for row in rows_of(log)] == [back, back, str(now.year), str(now.year)]
    with sqlite3.connect(log) as connection:
        said = [message for kind, message in connection.execute("SELECT kind, message FROM events ORDER BY id")
                if kind in ("clock", "pruned")]
    assert len(said) == 3, said
    assert "before the model it runs was made" in said[0] and said[1].startswith("the PC's clock was set")
    assert said[2].startswith("deleted 1 verdicts from before")


def test_evidence_of_a_day_named_by_a_wrong_clock_is_not_the_first_the_budget_deletes(model_path, tmp_path):
    """With a clock years back, the day being written is named before every other: the budget deleted each frame's
    evidence as soon as it was written, and kept the real days before it."""
    folder, evidence, spec = tmp_path / "incoming", tmp_path / "evidence", tmp_path / "clock"
    folder.mkdir()
    yesterday = evidence / (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    yesterday.mkdir(parents=True)
    for i in range(3):
        (yesterday / f"0800{i}.000_cam_defect.png").write_bytes(bytes(20_000))
    rng = np.random.default_rng(43)
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), part_image(rng, 128)[0])
    spec.write_text(f"-{DAYS_BACK}d")
    process = start_watch(folder, "--existing", "--model", model_path, "--log", tmp_path / "line.db", "--save", evidence,
                          "--save-all", "--save-max-gb", "0.00008", "--format", "jsonl", env=faketime_env(spec))
    try:
        assert len(lines_until(process, 3)) == 3
    finally:
        stop(process)
    newest = rows_of(tmp_path / "line.db")[-1]["evidence"]
    back = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=DAYS_BACK)).date().isoformat()
    assert newest.startswith(back + "/") and (evidence / newest).is_file()
    assert not list(yesterday.glob("*.png"))  # the older day went first


def test_a_clock_that_went_back_reads_before_the_newest_record_of_its_log():
    clock = LogClock("", newest="2026-12-01T06:00:00.000Z")
    utc = datetime.timezone.utc
    assert clock.wrong(datetime.datetime(2026, 12, 1, 5, 57, tzinfo=utc)) is None  # a time server's small correction
    assert "before the newest record of its log" in clock.wrong(datetime.datetime(2020, 1, 1, tzinfo=utc))
    clock.stamped("2026-12-02T00:00:00.000Z")  # what the station writes raises the bar
    assert "2026-12-02 00:00" in clock.wrong(datetime.datetime(2026, 12, 1, 12, tzinfo=utc))
    made = LogClock("2026-11-29T16:00:56+00:00")  # the training PC's clock may differ from this one by hours
    assert made.wrong(datetime.datetime(2026, 11, 29, 3, tzinfo=utc)) is None
    assert "before the model it runs was made" in made.wrong(datetime.datetime(2026, 11, 27, tzinfo=utc))
