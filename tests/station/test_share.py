"""The inspection log is refused on a network share, before the line starts: SQLite's locks do not reach other PCs,
and two stations on two PCs given one log there both wrote to it and left `file is not a database`, every verdict
of both lost, while each said it had logged them. Reading a copy on a share stays possible."""
import contextlib
import sqlite3

import numpy as np
from click.testing import CliRunner

from insightad_edge.cli import main
from insightad_edge.inspections import InspectionLog
from share import network_share
from synthetic import part_image
from test_watch import write_video


def test_a_log_on_a_network_share_is_refused_before_the_line_starts_and_a_copy_there_can_be_read(model_path, tmp_path):
    video = write_video(tmp_path / "line.avi", [part_image(np.random.default_rng(0), 128)[0]] * 2)
    local = tmp_path / "inspections.db"
    kept = InspectionLog(local)
    kept.record({"time": "2026-12-01T06:00:00.000Z", "source": "cam", "frame": "0", "status": "ok", "score": 1.0,
                 "threshold": 2.0, "anomaly": 0, "model": "m.onnx", "model_sha256": "abc"})
    kept.close()
    with network_share(tmp_path / "share") as (served, mounted):
        watched = CliRunner().invoke(main, ["watch", str(video), "--model", str(model_path),
                                            "--log", str(mounted / "line.db")])
        assert watched.exit_code == 2 and "lies on a network share, fuse.sshfs" in watched.stderr, watched.output
        assert list(served.iterdir()) == []  # nothing made there

        with contextlib.closing(sqlite3.connect(local)) as source, \
                contextlib.closing(sqlite3.connect(mounted / "copy.db")) as copy:
            source.backup(copy)  # what the refusal advises: sqlite3 inspections.db ".backup ..."
        listed = CliRunner().invoke(main, ["log", str(mounted / "copy.db"), "--format", "jsonl"])
        assert listed.exit_code == 0 and '"frame": "0"' in listed.stdout, listed.output


def test_a_log_copy_on_a_read_only_share_can_be_read(tmp_path):
    """An auditor reads the line's log where they may not write (a read-only share, another user's folder): SQLite
    made the write-ahead log's index beside a log in WAL mode, and refused (`attempt to write a readonly database`)."""
    with network_share(tmp_path / "share", read_only=True) as (served, mounted):
        kept = InspectionLog(served / "inspections.db")  # written on the server's side, by the station's PC
        kept.record({"time": "2026-12-01T06:00:00.000Z", "source": "cam", "frame": "0", "status": "ok", "score": 1.0,
                     "threshold": 2.0, "anomaly": 0, "model": "m.onnx", "model_sha256": "abc"})
        kept.event("start", "watch cam with m.onnx")
        kept.close()
        for extra, expected in (([], '"frame": "0"'), (["--summary"], '"parts": 1'), (["--events"], '"kind": "start"')):
            listed = CliRunner().invoke(main, ["log", str(mounted / "inspections.db"), "--format", "jsonl", *extra])
            assert listed.exit_code == 0 and expected in listed.stdout, listed.output
        assert sorted(p.name for p in served.iterdir()) == ["inspections.db"]
