"""`insightad-edge`: score a folder of part images, show a model's contract, serve the HTTP API.

Exit codes: see ``errors.EXIT_CODES_HELP`` (0 done, 1 some item failed, 2 usage, 3 model unusable).
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import sys
from collections import Counter
from pathlib import Path

import click

from . import __version__
from .config import (
    API_KEY_ENV,
    DEFAULT_LOG,
    DRIFT_DEFAULTS,
    PORT_ENV,
    SCORE_KEYS,
    SERVE_DEFAULTS,
    ServeOptions,
    install_hint,
    limit_decoder,
)
from .errors import EXIT_CODES_HELP, EXIT_FAILED, EXIT_UNUSABLE, EXIT_USAGE, InsightadError, ModelError

log = logging.getLogger("insightad_edge")


class Commands(click.Group):
    """The commands, with what the machine refuses them (a full disk, the reader of stdout gone) said in one line
    with exit 1, not as a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            stdout_gone()  # were it stdout that failed, Python's flush at exit would fail again
            reason = "the reader of stdout has gone" if isinstance(exc, BrokenPipeError) else exc.strerror or str(exc)
            click.echo(f"Error: {reason}" + (f": {exc.filename}" if exc.filename else ""), err=True)
            ctx.exit(EXIT_FAILED)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="insightad-edge")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens to stderr.")
def main(verbose: bool) -> None:
    """Flag defective parts with an exported insightad model (no torch needed)."""
    limit_decoder()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


class Number(click.FloatRange):
    """A float option: click's FloatRange, which lets NaN past every bound (no comparison with NaN is true),
    made to refuse NaN and infinity, since a threshold of NaN would pass every part."""

    name = "number"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number

    def _describe_range(self) -> str:  # click's help would print "x<=None" for a number without bounds
        return "" if self.min is None and self.max is None else super()._describe_range()


class HostPort(click.ParamType):
    """HOST:PORT (an IPv6 host in brackets, [::1]:8080) as (host, port), the port a real one."""

    name = "host:port"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            self.fail(f"{value!r} is not HOST:PORT (a port from 0 to 65535)", param, ctx)
        return host.removeprefix("[").removesuffix("]"), int(port)


def quiet_opencv() -> None:
    """OpenCV prints decoder warnings straight to stderr; the row's error already says what went wrong."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def typed_on_command_line(parameter: str) -> bool:
    """Whether the user gave this option on the command line, not its default or an environment variable."""
    return click.get_current_context().get_parameter_source(parameter) == click.core.ParameterSource.COMMANDLINE


def writable_file(path: Path | None, option: str) -> None:
    """Refuse an output path whose folder does not exist, before any work is done (exit 2)."""
    if path is not None and not path.parent.is_dir():
        raise click.BadParameter(f"folder {path.parent} does not exist", param_hint=option)


def writable_folder(path: Path | None, option: str) -> None:
    """Make an output folder now, or refuse it (exit 2) before any work is done: found out at the first write, a
    folder that cannot be made cost a whole run of scoring, or an error in every row."""
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot make folder {path}: {exc.strerror or exc}", param_hint=option) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write to folder {path}", param_hint=option)


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
        detector = Detector(model, threshold=threshold, threads=threads)
    except ModelError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_UNUSABLE)
    for warning in detector.warnings:
        log.warning("%s: %s", detector.path.name, warning)
    return detector


def _score_one(detector, path: Path, overlay: Path | None) -> dict:
    from . import preprocess

    row = {"path": str(path), "score": None, "threshold": detector.threshold, "anomaly": None, "error": None,
           "status": "error"}
    try:
        image = preprocess.decode(path, detector.metadata.preprocess.channels)
        result = detector(image, with_map=overlay is not None)
        row.update(score=result.score, anomaly=result.anomaly, status=result.status)
        if overlay is not None:
            try:
                _save_overlay(overlay, image, result)
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


def _save_overlay(target: Path, gray, result) -> None:
    import cv2

    from .overlay import render_overlay

    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), render_overlay(gray, result.anomaly_map, result.threshold)):
        raise OSError(f"could not write {target}")


def _csv_value(value) -> str:
    """CSV cells as JSON writes them: true/false, an empty cell for none."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, bool) else str(value)


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
        elif self.fmt == "csv":
            self.csv.writerow({k: _csv_value(row[k]) for k in SCORE_KEYS})
        else:
            score = "" if row["score"] is None else f"{row['score']:.6f}"
            verdict = {"error": "ERROR", "not_inspectable": "NO-VERDICT", "defect": "ANOMALY"}.get(row["status"], "ok")
            self.stream.write(f"{row['path']:<{self.width}}  {score:>10}  {row['threshold']:>10.6f}  "
                              f"{verdict:<8}  {row['error'] or ''}\n")
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
        writer = RowWriter(stream, fmt, max(len(str(p)) for p in images))
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
        from .inspectability import least_sharpness, most_enlarged

        i, sharpness = meta.inspection, least_sharpness(meta)
        lines.append(("inspectable", f"brightness {i.brightness[0]:.3f}-{i.brightness[1]:.3f}"
                      + ("" if i.part_area is None else f", part area {i.part_area[0]:.3f}-{i.part_area[1]:.3f}")
                      + ("" if i.contrast_min is None else f", contrast >= {i.contrast_min:.2f}")
                      + ("" if sharpness is None else f", sharpness >= {sharpness:.2g}")
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


@main.command(epilog="Exit codes: 0 stopped (SIGINT, SIGTERM, SIGHUP) or the video ended; 1 stopped, but some verdicts never "
                     "reached the log (they are on stdout); 2 usage error, or a log that cannot be opened; 3 the model "
                     "cannot be used. Frames that fail are rows in the log, not exit codes: a station keeps running.")
@click.argument("source")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), help="ONNX model [default: the shipped one]")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_LOG),
              show_default=True, help="SQLite inspection log: every verdict and event.")
@click.option("--no-log", is_flag=True, help="Keep no log.")
@click.option("--log-keep-days", type=Number(min=0, min_open=True),
              help="Delete verdicts older than this from the log, at the start and every hour [default: keep all].")
@click.option("--save", type=click.Path(file_okay=False, path_type=Path),
              help="Keep evidence here: defects and frames without a verdict, as PNG with their overlays.")
@click.option("--save-all", is_flag=True, help="Keep every frame as evidence, not only defects.")
@click.option("--save-max-gb", type=Number(min=0, min_open=True),
              help="Disk budget for the evidence; the oldest days go first.")
@click.option("--existing", is_flag=True, help="A folder: also judge the images already in it.")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Judge every N-th frame of a video or stream.")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@click.option("--threshold", type=Number(), help="Override the model's calibrated threshold.")
@click.option("--http", "http_address", type=HostPort(), metavar="HOST:PORT",
              help="Also serve the operator's page, /health and /metrics here (needs the [serve] extra).")
@click.option("--api-key", envvar=API_KEY_ENV, show_envvar=True, help="Require this key on the page's data and /metrics.")
@click.option("--expected-defect-rate", type=Number(0, 1), default=DRIFT_DEFAULTS["expected_defect_rate"],
              show_default=True, help="The line's usual share of defects; the drift monitor alarms on far more.")
def watch(source: str, model: Path | None, log_path: Path, no_log: bool, log_keep_days: float | None,
          save: Path | None, save_all: bool, save_max_gb: float | None, existing: bool, stride: int, fmt: str,
          threshold: float | None, http_address: tuple[str, int] | None, api_key: str | None,
          expected_defect_rate: float) -> None:
    """Run an inspection station on SOURCE: a folder (new image files), a video file, a camera index (0) or a
    stream URL (rtsp://, http:// MJPEG). One line per verdict; every verdict in the log."""
    import signal
    import sqlite3

    from .evidence import Evidence
    from .inspections import InspectionLog
    from .monitor import DriftMonitor
    from .sources import Stop, check_options
    from .station import Station, summary_line

    for given, name in ((save_all, "--save-all"), (save_max_gb is not None, "--save-max-gb")):
        if given and save is None:
            raise click.BadParameter("needs --save DIR", param_hint=name)
    if typed_on_command_line("api_key") and http_address is None:  # from the environment it may be meant for `serve`
        raise click.BadParameter("protects the page, which needs --http HOST:PORT", param_hint="--api-key")
    if log_keep_days is not None and no_log:
        raise click.BadParameter("there is no log to keep with --no-log", param_hint="--log-keep-days")
    if no_log and typed_on_command_line("log_path"):
        raise click.BadParameter("names a log that --no-log says not to keep", param_hint="--log")
    try:
        check_options(source, existing=existing, stride=stride)
    except (ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from None
    writable_file(None if no_log else log_path, "--log")
    writable_folder(save, "--save")
    quiet_opencv()
    detector = open_detector(model, threshold)
    stop = Stop()
    # a closed terminal (SIGHUP) stops the line as cleanly as Ctrl-C: the log flushed, the summary printed
    for number in (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])):
        signal.signal(number, lambda *_: stop.set())
    monitor = DriftMonitor(detector.metadata, expected_defect_rate=expected_defect_rate)
    page = None if http_address is None else OperatorPage(detector, monitor, http_address, api_key,
                                                          None if no_log else log_path)
    try:
        inspection_log = None if no_log else InspectionLog(log_path, keep_days=log_keep_days)
    except (sqlite3.Error, ValueError) as exc:  # not a log, a newer one, or no room for it: before the line starts
        click.echo(f"Error: cannot keep the inspection log at {log_path}: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if inspection_log is not None:
        click.echo(f"logging every verdict to {log_path}"
                   + ("" if log_keep_days is None else f", keeping {log_keep_days:g} days"), err=True)
    evidence = None if save is None else Evidence(
        save, max_bytes=None if save_max_gb is None else int(save_max_gb * 1e9), save_all=save_all)

    def announce(event) -> None:  # every event on stderr, and a source's state on the page
        click.echo(f"{event.kind}: {event.message}", err=True)
        if page is not None:
            page.event(event)

    try:
        emit = VerdictPrinter(fmt, logged=not no_log).write
        station = Station(detector, monitor=monitor, log=inspection_log, evidence=evidence,
                          emit=emit if page is None else lambda v: (emit(v), page.show(v)), on_event=announce)
        counts = station.run(source, stop=stop, existing=existing, stride=stride)
    except FileNotFoundError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except OutputGone as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        for sink in (evidence, inspection_log, page):
            if sink is not None:
                sink.close()
    click.echo(f"watch stopped: {summary_line(counts)}", err=True)
    if evidence is not None and evidence.failed:
        click.echo(f"Warning: the evidence of {evidence.failed} frames could not be written to {save} "
                   "(their log rows name files that do not exist)", err=True)
    if inspection_log is not None and inspection_log.unwritten:
        click.echo(f"Error: {inspection_log.unwritten} verdicts and events could not be written to {log_path} "
                   "(they are on stdout)", err=True)
        sys.exit(EXIT_FAILED)


class OperatorPage:
    """`watch --http`: the server's page, /health and /metrics in a thread, fed by the station's verdicts."""

    def __init__(self, detector, monitor, address: tuple[str, int], api_key: str | None, log_path: Path | None = None):
        import threading

        try:
            from .board import Board
            from .metrics import Metrics
            from .server import bind, create_app, server_for
        except ImportError as exc:
            click.echo(f"Error: --http needs the serve extra: {install_hint('serve')} ({exc})", err=True)
            sys.exit(EXIT_USAGE)
        options = ServeOptions(host=address[0], port=address[1], api_key=api_key)
        try:
            sock = bind(options.host, options.port)
        except OSError as exc:
            click.echo(f"Error: {exc}; choose another --http port", err=True)
            sys.exit(EXIT_USAGE)
        self.detector, self.monitor = detector, monitor
        self._uncounted_log = log_path  # whose last hour the page counts once the source is named
        self.board, self.metrics = Board(monitor), Metrics(detector)
        self.server = server_for(create_app(detector, options, monitor=monitor, board=self.board,
                                            metrics=self.metrics, infer=False), options)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        host, port = options.host, sock.getsockname()[1]  # port 0 lets the system choose one: name it
        click.echo(f"operator's page on http://{f'[{host}]' if ':' in host else host}:{port}/", err=True)

    def show(self, verdict) -> None:
        result = verdict.result
        self.board.add(time_utc=verdict.time, status=verdict.status, score=verdict.score, threshold=verdict.threshold,
                       error=verdict.error, image=verdict.image, anomaly_map=result.anomaly_map if result else None,
                       skipped=verdict.skipped)
        self.metrics.verdict(verdict.status, verdict.score, dict(verdict.timings_ms), self.monitor.state)
        self.metrics.skipped(verdict.skipped)

    def event(self, event) -> None:
        from .inspections import utc_now

        if self._uncounted_log is not None and event.source:  # the first event: the source is named, no verdict yet
            self._count_the_logged_hour(self._uncounted_log, event.source)
            self._uncounted_log = None
        self.board.source_event(event.kind, event.message, utc_now())
        if self.board.source_state is not None:
            self.metrics.source(self.board.source_state)

    def _count_the_logged_hour(self, log_path: Path, source: str) -> None:
        """A restarted station's page counts the last hour its log holds for this source."""
        import sqlite3

        from .board import HOUR_S
        from .inspections import recent

        try:
            self.board.seed(recent(log_path, source, HOUR_S))
        except (OSError, sqlite3.Error) as exc:  # the page's count is a convenience; the line goes on without it
            log.warning("the page's last hour starts empty: cannot read %s (%s)", log_path, exc)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class VerdictPrinter:
    """One line per verdict on stdout, flushed: a table for people, JSON Lines for programs.

    Stdout is a convenience; the log is the record. When what reads stdout goes away (a pipe's reader ended, a
    full disk), the station goes on judging and logging, and says so once; with no log, nothing would keep the
    verdicts, so the station stops (``OutputGone``).
    """

    def __init__(self, fmt: str, logged: bool):
        self.fmt, self.logged, self.gone = fmt, logged, False
        if fmt == "table":
            self._print(f"{'time':<24}  {'frame':<40}  {'status':<15}  {'score':>10}  {'threshold':>10}  error")

    def write(self, verdict) -> None:
        if self.fmt == "jsonl":
            self._print(json.dumps(verdict.row()))
        else:
            score = "" if verdict.score is None else f"{verdict.score:.6f}"
            self._print(f"{verdict.time:<24}  {verdict.frame[-40:]:<40}  {verdict.status:<15}  {score:>10}  "
                        f"{verdict.threshold:>10.6f}  {verdict.error or ''}")

    def _print(self, line: str) -> None:
        if self.gone:
            return
        try:
            click.echo(line)
            sys.stdout.flush()
        except OSError as exc:  # BrokenPipeError too
            self.gone = True
            stdout_gone()
            reason = "its reader has gone" if isinstance(exc, BrokenPipeError) else exc.strerror or exc
            if not self.logged:
                raise OutputGone(f"stdout cannot be written ({reason}) and there is no log to keep the verdicts") from None
            click.echo(f"Warning: stdout cannot be written ({reason}); the verdicts go on to the log only", err=True)


class OutputGone(Exception):
    """Stdout cannot be written, and nothing else keeps the verdicts."""


def stdout_gone() -> None:
    """Point stdout at nothing, so neither later prints nor Python's flush at exit raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@main.command(name="log", epilog="Exit codes: 0 listed; 2 usage error (no file there, a bad time); 3 the file is not "
                                 "an inspection log.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--since", help="From this time: ISO 8601 (2026-11-29T06:00, local unless it says Z) or an age (8h, 2d).")
@click.option("--until", help="Before this time, same forms.")
@click.option("--status", type=click.Choice(["ok", "defect", "not_inspectable", "error"]))
@click.option("--summary", is_flag=True, help="Per hour: parts, defects, defect rate, not inspectable, errors, "
              "live frames skipped while busy, p95 latency.")
@click.option("--events", "list_events", is_flag=True,
              help="The events instead: start, stop, a source lost and back, drift, pruned.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
def log_command(path: Path, since: str | None, until: str | None, status: str | None, summary: bool,
                list_events: bool, fmt: str) -> None:
    """List the verdicts (or a summary per hour, or the events) of an inspection log written by `watch`."""
    import sqlite3

    from . import inspections

    if list_events and (summary or status):
        raise click.UsageError("--events lists the events: not with --summary or --status")
    try:
        bounds = [None if t is None else inspections.parse_time(t) for t in (since, until)]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        if list_events:
            rows, keys = inspections.events(path, *bounds), ("time", "kind", "source", "message")
        elif summary:
            rows = inspections.summary(path, *bounds)
            keys = ("hour", "parts", "defects", "defect_rate", "not_inspectable", "errors", "skipped", "p95_latency_ms")
        else:
            rows = [{**r, "anomaly": None if r["anomaly"] is None else bool(r["anomaly"])}
                    for r in map(dict, inspections.verdicts(path, *bounds, status=status))]
            keys = ("time", "source", "frame", "status", "score", "threshold", "anomaly", "error", "latency_ms",
                    "skipped", "evidence")
    except (sqlite3.Error, ValueError) as exc:  # not SQLite, another program's database, or a newer log
        click.echo(f"Error: {path} cannot be read as an inspection log: {exc}", err=True)
        sys.exit(EXIT_UNUSABLE)
    write_table(rows, keys, fmt)


def write_table(rows: list[dict], keys: tuple, fmt: str) -> None:
    if fmt == "jsonl":
        for row in rows:
            click.echo(json.dumps({k: row[k] for k in keys}))
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(keys)
        writer.writerows([[_csv_value(row[k]) for k in keys] for row in rows])
        return
    cells = [[_cell(row[k]) for k in keys] for row in rows]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    click.echo("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


if __name__ == "__main__":
    main()
