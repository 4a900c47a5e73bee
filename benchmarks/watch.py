"""How fast a station judges a line, and what its log and evidence cost, side by side in one run.

    python benchmarks/watch.py --data DATA [--frames 160] [--live-seconds 10] [--soak-seconds 480]

Makes a lossless video (FFV1) of 1024x1024 frames from DATA's test images in a temporary folder (deleted
after; no picture is kept), then runs the station over it three ways, alternating, each twice: no sinks,
with the SQLite log, with the log and evidence (defects saved as PNG with their overlays). Then serves the
same frames as an MJPEG stream on 127.0.0.1 at 30 frames/s and counts what the latest-frame reader skips,
and what its check for a frozen camera costs next to decoding a frame. Last, a soak: the `watch` command as a
line runs it (the log, the operator's page asked for its data every second) on that stream, its memory read
once warm (SQLite's and the allocator's caches fill in the first minutes) and at the end, and its printed
verdicts counted against the log's rows.
Prints a table and the machine; writes benchmarks/watch_results.json.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edge_path import machine

from insightad_edge import Detector
from insightad_edge.evidence import Evidence
from insightad_edge.folders import folder_frames
from insightad_edge.frames import Stop
from insightad_edge.inspections import InspectionLog
from insightad_edge.station import Station
from insightad_train.data import load_dataset  # torch-free module

BUDGET_FULL = "log+evidence, budget full"
FULL_DAY_FILES = 20_000  # the oldest day's files when the budget is reached (a day of defects at a few per second)
WARM_S = 180.0  # a station's memory grows this long as caches fill, then holds
OLD_FILE_BYTES = 600_000  # about one 1024x1024 evidence PNG: each frame kept deletes one or two of them


def write_video(paths: list[Path], out: Path) -> int:
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), 30, (1024, 1024), True)
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        writer.write(cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_AREA))
    writer.release()
    return len(paths)


def run_station(detector: Detector, video: Path, folder: Path, sinks: str) -> dict:
    """One pass over the video; frames/s and latency from frame read to verdict handed to the sinks."""
    log = InspectionLog(folder / f"{sinks}-{time.monotonic_ns()}.db") if sinks != "none" else None
    evidence = None
    if sinks.startswith("log+evidence"):
        kept = folder / f"evidence-{time.monotonic_ns()}"
        budget = None
        if sinks == BUDGET_FULL:  # a station weeks into its budget: every frame kept deletes the oldest
            old_day = kept / "2000-01-01"
            old_day.mkdir(parents=True)
            for i in range(FULL_DAY_FILES):  # sparse: the size of a real frame's evidence, no disk used
                with open(old_day / f"{i:06d}.000_{i}_defect.png", "wb") as handle:
                    handle.truncate(OLD_FILE_BYTES)
            budget = FULL_DAY_FILES * OLD_FILE_BYTES
        evidence = Evidence(kept, max_bytes=budget)
    latencies: list[float] = []
    station = Station(detector, log=log, evidence=evidence,
                      emit=lambda v: latencies.append((time.perf_counter() - v.read_at) * 1000.0))
    began = time.perf_counter()
    counts = station.run(video)
    for sink in (evidence, log):  # everything written: the evidence writer may still be busy
        if sink is not None:
            sink.close()
    seconds = time.perf_counter() - began
    frames = sum(counts.values()) - counts["skipped"]
    result = {"frames": frames, "fps": len(latencies) / seconds,
              "p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95))}
    if log is not None:  # what the verdicts added to the file once closed (its write-ahead log checkpointed into it)
        result["log_bytes_per_verdict"] = (log.path.stat().st_size - empty_log_bytes(folder)) / frames
    return result


def empty_log_bytes(folder: Path) -> int:
    """The size of a log holding nothing: its schema's tables and indexes, a page each."""
    empty = InspectionLog(folder / f"empty-{time.monotonic_ns()}.db")
    empty.close()
    return empty.path.stat().st_size


class Stream(BaseHTTPRequestHandler):
    frames: list[bytes] = []
    fps = 30.0

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        began, index = time.perf_counter(), 0
        try:
            while True:
                data = self.frames[index % len(self.frames)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                                 + data + b"\r\n")
                index += 1
                time.sleep(max(0.0, began + index / self.fps - time.perf_counter()))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def mjpeg_stream(paths: list[Path]):
    """The first 30 images as a 30 frames/s MJPEG stream on loopback, in a loop: its URL."""
    Stream.frames = [cv2.imencode(".jpg", cv2.resize(cv2.imread(str(p)), (1024, 1024)),
                                  [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for p in paths[:30]]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    finally:
        server.shutdown()


def live(detector: Detector, paths: list[Path], seconds: float) -> dict:
    """A 30 frames/s MJPEG stream on loopback: what the station judges and what it skips."""
    stop = Stop()
    threading.Timer(seconds, stop.set).start()
    judged: list[float] = []
    station = Station(detector, emit=lambda v: judged.append((time.perf_counter() - v.read_at) * 1000.0))
    with mjpeg_stream(paths) as url:
        counts = station.run(url, stop=stop)
    return {"source_fps": Stream.fps, "seconds": seconds, "judged": len(judged), "skipped": counts["skipped"],
            "judged_fps": len(judged) / seconds, "p50_ms": float(np.percentile(judged, 50)),
            "p95_ms": float(np.percentile(judged, 95))}


def novelty_cost(jpeg: bytes, repeats: int = 200) -> dict:
    """What telling a frozen camera's repeated frame from a new one costs the reader thread per frame, next to
    decoding the frame (the two frames compared are equal: the whole array is read)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    same = image.copy()
    began = time.perf_counter()
    for _ in range(repeats):
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    decode_ms = (time.perf_counter() - began) * 1000.0 / repeats
    began = time.perf_counter()
    for _ in range(repeats):
        np.array_equal(image, same)
    compare_ms = (time.perf_counter() - began) * 1000.0 / repeats
    return {"decode_ms": decode_ms, "compare_ms": compare_ms, "ratio": compare_ms / decode_ms}


def soak(model: Path | None, paths: list[Path], seconds: float, folder: Path) -> dict:
    """``insightad-edge watch`` on the live stream for SECONDS with its log and page, stopped as Ctrl-C stops it:
    resident memory once warm and at the end, the share of a core it took between, verdicts printed and verdicts
    in the log."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = folder / "soak.db"
    with mjpeg_stream(paths) as url:
        command = [sys.executable, "-m", "insightad_edge.cli", "watch", url, "--log", str(log), "--http",
                   f"127.0.0.1:{port}", "--format", "jsonl"] + (["--model", str(model)] if model else [])
        station = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        printed: list[int] = []  # the verdict lines on stdout, counted when it closes
        counter = threading.Thread(target=lambda: printed.append(sum(1 for _ in station.stdout)), daemon=True)
        counter.start()

        def poll_page():  # what an open operator's page asks for, every second
            while station.poll() is None:
                with contextlib.suppress(OSError):
                    for route in ("/api/summary", "/api/last"):
                        urllib.request.urlopen(f"http://127.0.0.1:{port}{route}", timeout=5).read()
                time.sleep(1.0)

        threading.Thread(target=poll_page, daemon=True).start()
        time.sleep(WARM_S)
        warm, cpu_warm = rss_mb(station.pid), cpu_seconds(station.pid)
        time.sleep(seconds - WARM_S)
        late, cpu_late = rss_mb(station.pid), cpu_seconds(station.pid)
        station.send_signal(signal.SIGINT)
        station.wait(timeout=60)
        counter.join(timeout=60)
    with contextlib.closing(sqlite3.connect(log)) as connection:
        logged, skipped = connection.execute("SELECT count(*), total(skipped) FROM inspections").fetchone()
    return {"seconds": seconds, "printed": printed[0], "logged": logged, "skipped": int(skipped),
            "rss_mb_warm": warm, "rss_mb_at_end": late, "growth_kb_per_s": (late - warm) * 1024.0 / (seconds - WARM_S),
            "cpu_share_of_a_core": (cpu_late - cpu_warm) / (seconds - WARM_S)}


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has taken so far, its threads' user and system time together."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command's name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """A process's resident memory now."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024.0


def idle_folder(files: int, seconds: float = 3.0) -> dict:
    """A folder a shift has filled with judged files, and none arriving: the CPU the folder watch takes."""
    with tempfile.TemporaryDirectory() as folder:
        for i in range(files):
            open(Path(folder) / f"{i:06d}.png", "wb").close()
        stop = Stop()
        frames = folder_frames(Path(folder), stop, existing=False, seen=lambda _source, _frame: False)
        next(frames)  # the opening event: every file there is taken as judged
        threading.Timer(seconds, stop.set).start()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in frames:
            pass
        return {"files": files, "cpu_share": (time.process_time() - cpu) / (time.perf_counter() - wall)}


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--frames", type=int, default=160, show_default=True)
@click.option("--live-seconds", type=float, default=10.0, show_default=True)
@click.option("--soak-seconds", type=click.FloatRange(min=WARM_S + 60.0), default=480.0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path(__file__).with_name("watch_results.json"), show_default=True)
def main(data: Path, model: Path | None, frames: int, live_seconds: float, soak_seconds: float, out: Path) -> None:
    paths = [s.path for s in load_dataset(data).test][:frames]
    detector = Detector(model)
    results: dict = {"machine": machine(), "model": detector.path.name, "frames": len(paths)}
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "line.avi"
        write_video(paths, video)
        runs: dict = {"none": [], "log": [], "log+evidence": [], BUDGET_FULL: []}
        for _ in range(2):
            for sinks in runs:
                runs[sinks].append(run_station(detector, video, Path(folder), sinks))
        best = {sinks: max(r, key=lambda x: x["fps"]) for sinks, r in runs.items()}
        results["video"] = best
        results["log_cost"] = best["none"]["fps"] / best["log"]["fps"] - 1.0
        results["evidence_cost"] = best["none"]["fps"] / best["log+evidence"]["fps"] - 1.0
        results["budget_full_cost"] = best["none"]["fps"] / best[BUDGET_FULL]["fps"] - 1.0
    results["live"] = live(detector, paths, live_seconds)
    results["novelty"] = novelty_cost(Stream.frames[0])
    results["idle_folder"] = [idle_folder(files) for files in (1_000, 50_000)]
    with tempfile.TemporaryDirectory() as folder:
        results["soak"] = soak(model, paths, soak_seconds, Path(folder))
    out.write_text(json.dumps(results, indent=1))
    print(f"machine: {results['machine']}")
    print(f"| sinks ({len(paths)} frames, 1024x1024, video file) | frames/s | p50 / p95 ms, read to verdict |")
    print("|---|---:|---:|")
    for sinks, r in best.items():
        print(f"| {sinks} | {r['fps']:.1f} | {r['p50_ms']:.1f} / {r['p95_ms']:.1f} |")
    per_verdict = best["log"]["log_bytes_per_verdict"]
    print(f"the log takes {per_verdict:.0f} bytes a verdict: {per_verdict * 30 * 86400 / 1e9:.2f} GB a day at 30 frames/s")
    print(f"log costs {results['log_cost']:+.1%} of the frame rate; log and evidence {results['evidence_cost']:+.1%}; "
          f"with the evidence budget full ({FULL_DAY_FILES} files in the oldest day) {results['budget_full_cost']:+.1%}")
    lv = results["live"]
    print(f"live MJPEG at {lv['source_fps']:.0f} frames/s for {lv['seconds']:.0f} s: {lv['judged']} judged "
          f"({lv['judged_fps']:.1f}/s), {lv['skipped']} skipped; p50 / p95 {lv['p50_ms']:.1f} / {lv['p95_ms']:.1f} ms")
    nv = results["novelty"]
    print(f"is a live frame new (a frozen camera's is not)? {nv['compare_ms']:.2f} ms a 1024x1024 frame, "
          f"{nv['ratio']:.0%} of decoding it ({nv['decode_ms']:.1f} ms)")
    print("a folder watch with nothing arriving: " + "; ".join(
        f"{r['files']} files judged, {r['cpu_share']:.0%} of a core" for r in results["idle_folder"]))
    sk = results["soak"]
    print(f"watch with log and page on the live stream for {sk['seconds']:.0f} s: {sk['printed']} verdicts printed, "
          f"{sk['logged']} in the log, {sk['skipped']} frames skipped; resident memory {sk['rss_mb_warm']:.0f} MB "
          f"after {WARM_S:.0f} s, {sk['rss_mb_at_end']:.0f} MB at the end ({sk['growth_kb_per_s']:+.1f} KB/s); "
          f"{sk['cpu_share_of_a_core']:.0%} of a core meanwhile")


if __name__ == "__main__":
    main()
