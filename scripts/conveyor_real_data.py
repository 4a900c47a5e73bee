"""`watch --per-part` on a free-running camera over a belt made of real parts: one verdict per part, the same as
the part's own image gets.

    python scripts/conveyor_real_data.py DATA [--model MODEL] [--parts 10] [--step 64] [--live FPS]

Each of the first PARTS good and PARTS defective test images of DATA (an MVTec-layout category) is cut out along
its segmented part and slid across its own background with the part painted out (an empty belt with the same
light: a belt taken from another image would change the part's brightness, which the model sees), STEP pixels a
frame, with four empty frames before each part; the frames go into a lossless video in a temporary
folder (nothing is kept), which `insightad-edge watch VIDEO --per-part` judges. It prints how many parts passed,
how many verdicts came, how many agree with the verdict on the part's own image, and for those that do not, how
far the frame chosen had moved the part from where it lay in its own image: there the part sits on painted-out
background, which the model has never seen (at the part's own place every verdict is its own image's).
With ``--live FPS`` the same frames are also served as an MJPEG stream on 127.0.0.1 at FPS frames a second (JPEG
quality 95, as an IP camera sends them), and `watch URL --per-part` judges them as they come, frames dropped
while the model is busy included.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import cv2
import numpy as np

from insightad_edge import Detector


def cut_out(image: np.ndarray) -> np.ndarray:
    """The part's weight (0..1) in IMAGE: Otsu's dark segment, widened and feathered so no seam shows."""
    blurred = cv2.GaussianBlur(image, (5, 5), 0)
    _, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    mask = cv2.dilate(mask, np.ones((41, 41), np.uint8))
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 8)


def belt(image: np.ndarray) -> np.ndarray:
    """IMAGE with its part painted out: the empty fixture."""
    mask = (cut_out(image) > 0.01).astype(np.uint8) * 255
    return cv2.inpaint(image, mask, 15, cv2.INPAINT_TELEA)


def passing(image: np.ndarray, empty: np.ndarray, step: int) -> list[np.ndarray]:
    """IMAGE's part slid across EMPTY from beyond its left edge to beyond its right, STEP pixels a frame."""
    weight, width = cut_out(image), image.shape[1]
    frames = []
    for dx in range(-width // 2 - step, width // 2 + step + 1, step):
        move = np.float32([[1, 0, dx], [0, 1, 0]])
        shifted = cv2.warpAffine(image, move, (width, image.shape[0])).astype(np.float32)
        alpha = cv2.warpAffine(weight, move, (width, image.shape[0]))
        frames.append(np.clip(empty * (1 - alpha) + shifted * alpha, 0, 255).astype(np.uint8))
    return frames


def live_rows(jpegs: list[bytes], fps: float, model: Path | None) -> tuple[list[dict], str]:
    """`watch URL --per-part` on JPEGS served once as an MJPEG stream at FPS (then the last, the empty belt, with
    fresh noise, as a live camera's), stopped when they have all been sent: its rows, and its summary line."""
    sent = threading.Event()

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            last = cv2.imdecode(np.frombuffer(jpegs[-1], np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32)
            rng = np.random.default_rng(0)
            try:
                for i in range(10**9):
                    data = jpegs[i] if i < len(jpegs) else cv2.imencode(
                        ".jpg", np.clip(last + rng.normal(0, 2, last.shape), 0, 255).astype(np.uint8))[1].tobytes()
                    if i == len(jpegs):
                        sent.set()
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                    time.sleep(1.0 / fps)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), Camera)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    watch = subprocess.Popen([sys.executable, "-m", "insightad_edge.cli", "watch", f"http://127.0.0.1:{port}/belt.mjpg",
                              "--no-log", "--format", "jsonl", "--per-part", *(["--model", str(model)] if model else [])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent.wait(timeout=len(jpegs) / fps + 60)
    time.sleep(2.0)  # the last part leaves: three empty frames
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=60)
    server.shutdown()
    return [json.loads(line) for line in out.splitlines()], (err.strip().splitlines() or [""])[-1]


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--parts", default=10, show_default=True, help="Good and defective parts each.")
@click.option("--step", default=64, show_default=True, help="Pixels the belt moves between frames.")
@click.option("--live", type=float, help="Also serve the frames as an MJPEG stream at this many frames a second.")
def main(data: Path, model: Path | None, parts: int, step: int, live: float | None) -> None:
    detector = Detector(model)
    good = sorted((data / "test" / "good").glob("*.png"))[:parts]
    defective = sorted(p for d in sorted((data / "test").iterdir()) if d.name != "good" for p in d.glob("*.png"))
    chosen = good + defective[::max(1, len(defective) // parts)][:parts]
    static = [detector(str(path), not_inspectable="report").status for path in chosen]
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "belt.mkv"
        writer, count, starts, jpegs = None, 0, [], []
        for path in chosen:
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            empty = belt(image)
            writer = writer or cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 10, image.shape[::-1], False)
            starts.append(count + 4)
            for frame in [empty] * 4 + passing(image, empty, step):
                writer.write(frame)
                count += 1
                if live:
                    jpegs.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
        writer.write(empty)
        writer.release()
        done = subprocess.run([sys.executable, "-m", "insightad_edge.cli", "watch", str(video), "--no-log",
                               "--format", "jsonl", "--per-part", *(["--model", str(model)] if model else [])],
                              capture_output=True, text=True)
        every = subprocess.run([sys.executable, "-m", "insightad_edge.cli", "watch", str(video), "--no-log",
                                "--format", "jsonl", *(["--model", str(model)] if model else [])],
                               capture_output=True, text=True)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    frames = [json.loads(line)["status"] for line in every.stdout.splitlines()]
    kept = [r["status"] for r in rows]
    agree = sum(a == b for a, b in zip(kept, static)) if len(kept) == len(static) else None
    print(f"{len(chosen)} parts ({len(good)} good, {len(chosen) - len(good)} defective) passed in {count} frames; "
          f"exit {done.returncode}")
    print(f"frame by frame: {len(frames)} rows, {frames.count('not_inspectable')} without a verdict, "
          f"{frames.count('ok') + frames.count('defect')} judged")
    print(f"--per-part: {len(kept)} rows: {kept.count('ok')} ok, {kept.count('defect')} defect, "
          f"{kept.count('not_inspectable')} without a verdict")
    print(f"the same verdict as the part's own image: {agree} of {len(chosen)}" if agree is not None else
          "the rows do not pair with the parts one to one")
    if live:
        streamed, summary = live_rows(jpegs + [cv2.imencode(".jpg", empty)[1].tobytes()], live, model)
        kept = [r["status"] for r in streamed]
        agree = sum(a == b for a, b in zip(kept, static)) if len(kept) == len(static) else None
        print(f"live at {live:g} frames/s: {len(kept)} rows ({summary}); "
              f"{sum(r['skipped'] for r in streamed)} frames skipped while a part was in view; "
              + (f"the same verdict as the part's own image: {agree} of {len(chosen)}" if agree is not None
                 else "the rows do not pair with the parts one to one"))
    first_dx = -empty.shape[1] // 2 - step
    for path, row, alone, start in zip(chosen, rows, static, starts):
        if row["status"] != alone:
            moved = first_dx + step * (int(row["frame"]) - start)
            print(f"  {path.parent.name}/{path.name}: {row['status']} on the belt ({row['score']:.3g}), {alone} alone; "
                  f"the frame chosen moved it {moved:+d} pixels")


if __name__ == "__main__":
    main()
