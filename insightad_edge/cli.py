"""`insightad-edge`: score a folder of part images, show a model's contract, serve the HTTP API; the station's
`watch` and `log` are in ``station_cli``, what every command shares in ``console``.

Exit codes: see ``errors.EXIT_CODES_HELP`` (0 done, 1 some item failed, 2 usage, 3 model unusable).
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click

from . import __version__
from .config import (
    API_KEY_ENV,
    PORT_ENV,
    SCORE_KEYS,
    SERVE_DEFAULTS,
    ServeOptions,
    install_hint,
)
from .console import (
    Commands,
    Number,
    csv_value,
    open_detector,
    quiet_opencv,
    stdout_gone,
    table_number,
    writable_file,
    writable_folder,
)
from .errors import EXIT_CODES_HELP, EXIT_FAILED, EXIT_USAGE, InsightadError
from .imagefiles import (
    first_three,
    holds_images,
    kinds_text,
    named_as_image,
    other_kinds,
    parts_folder,
    readable,
    write_image,
)
from .station_cli import log_command, watch

log = logging.getLogger("insightad_edge")


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="insightad-edge")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens to stderr.")
def main(verbose: bool) -> None:
    """Flag defective parts with an exported insightad model (no torch needed)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


def find_images(folder: Path, recursive: bool) -> list[Path]:
    """Image files under FOLDER (a single file is taken as is), sorted; other files are skipped, and their kinds
    named (a camera set to write `.raw` must not look like a folder of few parts)."""
    if folder.is_file():
        return [folder]
    files = sorted(p for p in (_walk(folder, parts_folder) if recursive else folder.iterdir()) if p.is_file())
    images = [p for p in files if named_as_image(p.name)]
    if kinds := other_kinds(p.name for p in files):
        log.warning("skipped files not named as images: %s", kinds_text(kinds))
    if not recursive and (held := sorted(d.name for d in folder.iterdir()
                                         if d.is_dir() and parts_folder(d.name) and holds_images(d))):
        log.warning("skipped subfolders holding images (--recursive scores them): %s", first_three(held))
    return images


def _walk(folder: Path, entered) -> Iterator[Path]:
    """Every entry under FOLDER but folders, going into the subfolders whose names ``entered`` takes."""
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if entered(name))
        yield from (Path(root) / name for name in names)


def _score_one(detector, path: Path, overlay: Path | None) -> dict:
    from . import preprocess

    row = {"path": str(path), "score": None, "threshold": detector.threshold, "anomaly": None, "error": None,
           "status": "error"}
    try:
        frame = preprocess.load(path)  # as the file holds it: the detector words a refusal by its depth
        result = detector(frame, with_map=overlay is not None)
        row.update(score=result.score, anomaly=result.anomaly, status=result.status)
        if overlay is not None:
            try:
                _save_overlay(overlay, preprocess.to_float(frame, 3), result)
            except OSError as exc:  # a full disk, say: the verdict stands, and the row and the summary say what is missing
                row.update(error=f"overlay not written: {exc.strerror or exc}", overlay_missing=True)
    except InsightadError as exc:
        row["error"] = str(exc)
        row["status"] = _status_of(exc)
    except Exception as exc:  # one bad file must not end a folder run; the row carries the reason
        log.exception("unexpected failure on %s", path)
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _status_of(exc: Exception) -> str:
    from .errors import NotInspectable

    return "not_inspectable" if isinstance(exc, NotInspectable) else "error"


def overlay_targets(images: list[Path], folder: Path, recursive: bool, maps_dir: Path) -> dict[Path, Path]:
    """Where each image's overlay goes: its path under FOLDER, as PNG (``a.png`` and ``a.jpg`` side by side
    keep their whole names, ``a.png.png`` and ``a.jpg.png``, so neither overwrites the other).

    A maps folder that this command scores is refused: the overlays would overwrite the images (or, beside
    JPEGs, be scored as parts by the next run).
    """
    root = folder if folder.is_dir() else folder.parent
    scanned = folder.is_dir() and recursive and root.resolve() in maps_dir.resolve().parents
    if maps_dir.resolve() == root.resolve() or scanned:
        raise click.BadParameter(f"{maps_dir} is where the images are: the overlays would overwrite them or be "
                                 "scored as parts; choose a folder outside it", param_hint="--save-maps")
    relative = {image: image.relative_to(root) for image in images}
    shared = Counter(r.with_suffix(".png") for r in relative.values())
    return {image: maps_dir / (r.with_suffix(".png") if shared[r.with_suffix(".png")] == 1 else r.with_name(f"{r.name}.png"))
            for image, r in relative.items()}


def _save_overlay(target: Path, picture, result) -> None:
    from .overlay import render_overlay

    target.parent.mkdir(parents=True, exist_ok=True)
    write_image(target, render_overlay(picture, result.anomaly_map, result.threshold))


class RowWriter:
    """Writes rows as table, CSV or JSON Lines, flushing each so a pipe sees verdicts as they come."""

    def __init__(self, stream, fmt: str, path_width: int):
        self.stream, self.fmt, self.width = stream, fmt, max(path_width, 4)
        if fmt == "csv":
            self.csv = csv.DictWriter(stream, fieldnames=SCORE_KEYS, lineterminator="\n")
            self.csv.writeheader()
        elif fmt == "table":
            stream.write(f"{'path':<{self.width}}  {'score':>10}  {'threshold':>10}  {'verdict':<8}  error\n")

    def write(self, row: dict) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps({k: row[k] for k in SCORE_KEYS}) + "\n")
        elif self.fmt == "csv":  # for people and spreadsheets: a file name that is not UTF-8 written out readably
            self.csv.writerow({k: readable(csv_value(row[k])) for k in SCORE_KEYS})
        else:
            score, threshold = table_number(row["score"]), table_number(row["threshold"])
            verdict = {"error": "ERROR", "not_inspectable": "NO-VERDICT", "defect": "ANOMALY"}.get(row["status"], "ok")
            self.stream.write(readable(f"{row['path']:<{self.width}}  {score:>10}  {threshold:>10}  "
                                       f"{verdict:<8}  {row['error'] or ''}\n"))
        self.stream.flush()


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("folder", type=click.Path(exists=True, path_type=Path))
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), help="ONNX model [default: the shipped one]")
@click.option("--recursive", is_flag=True, help="Also score images in subfolders.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write rows here instead of stdout.")
@click.option("--threshold", type=Number(), help="Override the model's calibrated threshold.")
@click.option("--workers", type=click.IntRange(min=1), default=SERVE_DEFAULTS.workers, show_default="CPU count",
              help="Images scored in parallel (decode, preprocess and model overlap across cores).")
@click.option("--save-maps", type=click.Path(file_okay=False, path_type=Path),
              help="Write a heat-map overlay with the threshold contour for each image here.")
def score(folder: Path, model: Path | None, recursive: bool, fmt: str, output: Path | None,
          threshold: float | None, workers: int, save_maps: Path | None) -> None:
    """Score every image in FOLDER (or one image file); one row per image with path, score, threshold,
    anomaly, error. A frame the model cannot judge gets no verdict: its row's error says why."""
    from concurrent.futures import ThreadPoolExecutor

    writable_file(output, "--output")
    if output is not None and named_as_image(output.name):  # the rows would be written over a part's picture
        raise click.BadParameter(f"{output} is named as a picture: the rows would be written over it; name a .csv or "
                                 ".jsonl file", param_hint="--output")
    quiet_opencv()
    images = find_images(folder, recursive)
    overlays = overlay_targets(images, folder, recursive, save_maps) if save_maps else {}
    writable_folder(save_maps, "--save-maps")
    detector = open_detector(model, threshold, threads=1 if workers > 1 else None)
    if not images:
        click.echo(f"Error: no images found in {folder}", err=True)
        sys.exit(EXIT_FAILED)
    stream = output.open("w", newline="") if output else sys.stdout
    counts: Counter = Counter()
    written = 0
    try:
        writer = RowWriter(stream, fmt, max(len(readable(str(p))) for p in images))
        with ThreadPoolExecutor(workers) as pool, click.progressbar(
            length=len(images), label="scoring", file=sys.stderr
        ) as bar:
            try:
                for row in pool.map(lambda p: _score_one(detector, p, overlays.get(p)), images):
                    counts[row["status"]] += 1
                    counts["overlay_missing"] += row.get("overlay_missing", False)
                    writer.write(row)
                    written += 1
                    bar.update(1)
            except OSError:
                pool.shutdown(wait=False, cancel_futures=True)  # nobody takes the rows: score no more images
                raise
        if output:
            stream.close()
    except OSError as exc:  # a full disk, or the reader of a pipe gone (score | head)
        if output:
            with contextlib.suppress(OSError):  # what it still holds cannot be written either
                stream.close()
        else:
            stdout_gone()
        where = output or "stdout"
        reason = "its reader has gone" if isinstance(exc, BrokenPipeError) else exc.strerror or exc
        click.echo(f"Error: could not write the rows to {where} ({reason}) after {written} of {len(images)} images",
                   err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"{len(images)} images: {counts['ok'] + counts['defect']} judged, {counts['defect']} defects, "
               f"{counts['not_inspectable']} not inspectable, {counts['error']} errors"
               + (f", {counts['overlay_missing']} overlays not written" if counts["overlay_missing"] else ""), err=True)
    if counts["not_inspectable"] or counts["error"] or counts["overlay_missing"]:
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
        ("input", f"{'gray' if p.channels == 1 else 'colour (BGR)'}, {p.input_size[1]}x{p.input_size[0]} (width x height)"),
        ("preprocess", f"resize to {p.work_size} ({p.interpolation}), brightness {p.photometric}"
                       + (f" to {p.photometric_target:.3f}" if p.photometric != "none" else "")
                       + f", pose {p.align}, crop {p.crop[0]:.3f} x {p.crop[1]:.3f}"),
        ("score", f"{s.method} (blur sigma {s.blur_sigma}, border {s.border})"),
        ("threshold", f"{t.value:.6g} by {t.method}" + (f" q={t.quantile}" if t.quantile is not None else "")
                      + f" on {t.n_good} good / {t.n_defect} defective images"),
        ("trained on", f"data {meta.data_fingerprint or '-'}, {meta.created or '-'}, insightad {meta.package_version}"),
        ("schema", str(meta.schema_version)),
        ("sha256", detector.sha256 + (" (sealed at export, checked)" if detector.sealed else "")),
    ]
    if p.frame_size is not None:
        lines.insert(4, ("frames", f"{p.frame_size[1]}x{p.frame_size[0]} in training; other shapes keep their aspect"))
    if meta.inspection is not None:
        from .inspectability import least_sharpness, most_enlarged, most_others

        i, sharpness, others = meta.inspection, least_sharpness(meta), most_others(meta)
        lines.append(("inspectable", f"brightness {i.brightness[0]:.3f}-{i.brightness[1]:.3f}"
                      + ("" if i.part_area is None else f", part area {i.part_area[0]:.3f}-{i.part_area[1]:.3f}")
                      + ("" if i.contrast_min is None else f", contrast >= {i.contrast_min:.2f}")
                      + ("" if sharpness is None else f", sharpness >= {sharpness:.2g}")
                      + ("" if others is None else f", nothing else in view above {others:.0%} of the part")
                      + f", enlarged at most {most_enlarged(p):.2g} times"))
    lines += [("WARNING", warning) for warning in detector.warnings]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}")


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), help="ONNX model [default: the shipped one]")
@click.option("--host", default=SERVE_DEFAULTS.host, show_default=True,
              help="Address to bind; 0.0.0.0 exposes it to the network (set an API key then).")
@click.option("--port", type=click.IntRange(0, 65535), default=SERVE_DEFAULTS.port, show_default=True,
              envvar=PORT_ENV, show_envvar=True)
@click.option("--workers", type=click.IntRange(min=1), default=SERVE_DEFAULTS.workers, show_default="CPU count",
              help="Requests scored in parallel.")
@click.option("--max-body-mb", type=Number(min=0.01), default=SERVE_DEFAULTS.max_body_mb, show_default=True,
              help="Refuse request bodies larger than this.")
@click.option("--api-key", envvar=API_KEY_ENV, show_envvar=True, default=SERVE_DEFAULTS.api_key,
              help="Require this key on every route but /health (Authorization: Bearer KEY or X-API-Key: KEY).")
@click.option("--client-timeout-s", type=Number(min=0.1), default=SERVE_DEFAULTS.client_timeout_s,
              show_default=True, help="Cut a client that has not sent its whole request within this time.")
@click.option("--max-queue", type=click.IntRange(min=0), default=SERVE_DEFAULTS.max_queue, show_default=True,
              help="Answer 503 with Retry-After when this many requests already wait for a worker.")
@click.option("--threshold", type=Number(), help="Override the model's calibrated threshold.")
def serve(model: Path | None, threshold: float | None, **options) -> None:
    """Serve POST /infer, GET /health and GET /model over HTTP (needs the [serve] extra)."""
    try:
        from .server import bind, run
    except ImportError as exc:
        click.echo(f"Error: the server needs the serve extra: {install_hint('serve')} ({exc})", err=True)
        sys.exit(EXIT_USAGE)
    settings = ServeOptions(**options)
    quiet_opencv()
    detector = open_detector(model, threshold, threads=1 if settings.workers > 1 else None)
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        click.echo(f"Error: {exc}; choose another --port or stop what holds it", err=True)
        sys.exit(EXIT_USAGE)
    run(detector, settings, sock)


main.add_command(watch)
main.add_command(log_command)


if __name__ == "__main__":
    main()
