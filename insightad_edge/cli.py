"""`insightad-edge`: score a folder of part images, show a model's contract, serve the HTTP API.

Exit codes: 0 every image was scored; 1 some image failed (its row says why) or none was found;
2 usage error; 3 the model cannot be used.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import InsightadError, ModelError

ROW_KEYS = ("path", "score", "threshold", "anomaly", "error")
EXIT_FAILED, EXIT_MODEL = 1, 3
log = logging.getLogger("insightad_edge")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="insightad-edge")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens to stderr.")
def main(verbose: bool) -> None:
    """Flag defective parts with an exported insightad model (no torch needed)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


def find_images(folder: Path, recursive: bool) -> list[Path]:
    """Image files under FOLDER (a single file is taken as is), sorted; other files are skipped."""
    from .preprocess import IMAGE_SUFFIXES

    if folder.is_file():
        return [folder]
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in candidates if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if len(files) > len(images):
        log.info("skipped %d files that are not images", len(files) - len(images))
    return images


def open_detector(model: Path | None, threshold: float | None = None, threads: int | None = None):
    from .detector import Detector

    try:
        return Detector(model, threshold=threshold, threads=threads)
    except ModelError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_MODEL)


def _score_one(detector, path: Path, maps_dir: Path | None, root: Path) -> dict:
    from . import preprocess

    row = {"path": str(path), "score": None, "threshold": detector.threshold, "anomaly": None, "error": None}
    try:
        gray = preprocess.decode(path)
        result = detector(gray, with_map=maps_dir is not None)
        row.update(score=result.score, anomaly=result.anomaly)
        if maps_dir is not None:
            _save_overlay(maps_dir, path, root, gray, result)
    except InsightadError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # one bad file must not end a folder run; the row carries the reason
        log.exception("unexpected failure on %s", path)
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _save_overlay(maps_dir: Path, path: Path, root: Path, gray, result) -> None:
    import cv2

    from .overlay import render_overlay

    relative = path.relative_to(root) if root.is_dir() else Path(path.name)
    target = maps_dir / relative.with_suffix(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), render_overlay(gray, result.anomaly_map, result.threshold)):
        raise InsightadError(f"could not write the overlay {target}")


class RowWriter:
    """Writes rows as table, CSV or JSON Lines, flushing each so a pipe sees verdicts as they come."""

    def __init__(self, stream, fmt: str, path_width: int):
        self.stream, self.fmt, self.width = stream, fmt, max(path_width, 4)
        if fmt == "csv":
            self.csv = csv.DictWriter(stream, fieldnames=ROW_KEYS, lineterminator="\n")
            self.csv.writeheader()
        elif fmt == "table":
            stream.write(f"{'path':<{self.width}}  {'score':>10}  {'threshold':>10}  {'verdict':<8}  error\n")

    def write(self, row: dict) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps({k: row[k] for k in ROW_KEYS}) + "\n")
        elif self.fmt == "csv":
            self.csv.writerow({k: "" if row[k] is None else row[k] for k in ROW_KEYS})
        else:
            score = "" if row["score"] is None else f"{row['score']:.6f}"
            verdict = "ERROR" if row["error"] else ("ANOMALY" if row["anomaly"] else "ok")
            self.stream.write(f"{row['path']:<{self.width}}  {score:>10}  {row['threshold']:>10.6f}  "
                              f"{verdict:<8}  {row['error'] or ''}\n")
        self.stream.flush()


@main.command()
@click.argument("folder", type=click.Path(exists=True, path_type=Path))
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), help="ONNX model [default: the shipped one]")
@click.option("--recursive", is_flag=True, help="Also score images in subfolders.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write rows here instead of stdout.")
@click.option("--threshold", type=float, help="Override the model's calibrated threshold.")
@click.option("--workers", type=click.IntRange(min=1), default=lambda: os.cpu_count() or 1, show_default="CPU count",
              help="Images scored in parallel (decode, preprocess and model overlap across cores).")
@click.option("--save-maps", type=click.Path(file_okay=False, path_type=Path),
              help="Write a heat-map overlay with the threshold contour for each image here.")
def score(folder: Path, model: Path | None, recursive: bool, fmt: str, output: Path | None,
          threshold: float | None, workers: int, save_maps: Path | None) -> None:
    """Score every image in FOLDER; one row per image with path, score, threshold, anomaly, error."""
    from concurrent.futures import ThreadPoolExecutor

    images = find_images(folder, recursive)
    detector = open_detector(model, threshold, threads=1 if workers > 1 else None)
    if not images:
        click.echo(f"Error: no images found in {folder}", err=True)
        sys.exit(EXIT_FAILED)
    stream = output.open("w", newline="") if output else sys.stdout
    failed = 0
    try:
        writer = RowWriter(stream, fmt, max(len(str(p)) for p in images))
        with ThreadPoolExecutor(workers) as pool, click.progressbar(
            length=len(images), label="scoring", file=sys.stderr
        ) as bar:
            for row in pool.map(lambda p: _score_one(detector, p, save_maps, folder), images):
                failed += row["error"] is not None
                writer.write(row)
                bar.update(1)
    finally:
        if output:
            stream.close()
    if failed:
        click.echo(f"{failed} of {len(images)} images could not be scored", err=True)
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def info(model: Path | None, as_json: bool) -> None:
    """Show what MODEL expects and how it decides [default: the shipped model]."""
    detector = open_detector(model)
    meta = detector.metadata
    if as_json:
        click.echo(meta.to_json())
        return
    p, s, t = meta.preprocess, meta.score, meta.threshold
    size_mb = detector.path.stat().st_size / 1e6
    lines = [
        ("model", f"{detector.path} ({size_mb:.1f} MB)"),
        ("architecture", meta.arch),
        ("category", meta.category or "-"),
        ("input", f"{p.channels} channel, {p.input_size[1]}x{p.input_size[0]} (width x height)"),
        ("preprocess", f"resize to {p.work_size} ({p.interpolation}), brightness {p.photometric}"
                       + (f" to {p.photometric_target:.3f}" if p.photometric != "none" else "")
                       + f", pose {p.align}, crop {p.crop[0]:.3f} x {p.crop[1]:.3f}"),
        ("score", f"{s.method} (blur sigma {s.blur_sigma}, border {s.border})"),
        ("threshold", f"{t.value:.6g} by {t.method}" + (f" q={t.quantile}" if t.quantile is not None else "")
                      + f" on {t.n_good} good / {t.n_defect} defective images"),
        ("trained on", f"data {meta.data_fingerprint or '-'}, {meta.created or '-'}, insightad {meta.package_version}"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}")


@main.command()
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), help="ONNX model [default: the shipped one]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=lambda: os.cpu_count() or 1, show_default="CPU count",
              help="Requests scored in parallel.")
@click.option("--max-body-mb", type=click.FloatRange(min=0.01), default=32.0, show_default=True,
              help="Refuse request bodies larger than this.")
def serve(model: Path | None, host: str, port: int, workers: int, max_body_mb: float) -> None:
    """Serve POST /infer, GET /health and GET /model over HTTP (needs the [serve] extra)."""
    try:
        from .server import run
    except ImportError as exc:
        raise click.ClickException(f"the server needs the serve extra: pip install 'insightad[serve]' ({exc})") from None
    detector = open_detector(model, threads=1 if workers > 1 else None)
    run(detector, host=host, port=port, workers=workers, max_body_bytes=int(max_body_mb * 1024 * 1024))


if __name__ == "__main__":
    main()
