"""A station's log forecasts when its disk is full: a disk losing room fast is told of (in the log's events and in
/metrics; the page shows the same words) while there is room left, and once it has room again, that is told too. A
real file fills a real disk; the forecast's hour is made half a second so the test need not wait an hour."""
import os
import time

from insightad_edge import Detector
from insightad_edge.diskroom import WARN_DAYS, DiskRoom
from insightad_edge.inspections import InspectionLog, events
from insightad_edge.metrics import Metrics

MB = 1 << 20


def grow(path, megabytes: int) -> None:
    with open(path, "ab") as file:
        for _ in range(megabytes):
            file.write(b"\1" * MB)
        file.flush()
        os.fsync(file.fileno())


def until(condition, log, seconds: float = 20.0) -> None:
    """Verdicts go on (the log's writer looks at its disk as it writes them) until CONDITION holds."""
    deadline, frame = time.monotonic() + seconds, 0
    while not condition():
        assert time.monotonic() < deadline, "the forecast did not change"
        frame += 1
        log.record({"time": "2026-12-01T06:00:00.000Z", "source": "cam", "frame": str(frame), "status": "ok",
                    "score": 1.0, "threshold": 2.0, "anomaly": 0, "model": "m.onnx", "model_sha256": "abc"})
        time.sleep(0.05)


def test_a_disk_that_fills_fast_is_told_of_before_it_is_full_and_again_once_it_has_room(tmp_path, model_path):
    filler = tmp_path / "filler"
    grow(filler, 50)  # there before the station: deleting it at the end frees more than the station took
    log = InspectionLog(tmp_path / "line.db")
    try:
        log.room = DiskRoom(tmp_path, sample_s=0.0, span_s=0.5)
        metrics = Metrics(Detector(model_path))
        metrics.sinks(log, None)
        assert log.room.shortage() is None and log.room.days_left == float("inf")

        grow(filler, 150)  # ~100 MB a second: any disk is full within days at that rate
        time.sleep(0.6)
        until(lambda: log.room.shortage() is not None, log)
        assert "fills in about" in log.room.shortage() and "--log-keep-days" in log.room.shortage()
        scraped = {line.split()[0]: float(line.split()[1]) for line in metrics.text().decode().splitlines()
                   if line.startswith("insightad_log_disk")}
        assert scraped["insightad_log_disk_days_left"] < WARN_DAYS
        assert scraped["insightad_log_disk_free_bytes"] > 0

        filler.unlink()
        until(lambda: log.room.shortage() is None, log)
    finally:
        log.close()
    told = [event["message"] for event in events(tmp_path / "line.db") if event["kind"] == "disk"]
    assert len(told) == 2 and "fills in about" in told[0] and "has room again" in told[1], told
