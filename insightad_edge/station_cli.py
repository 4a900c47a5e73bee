"""`insightad-edge watch` and `insightad-edge log`: an inspection station on the command line, and its log read back.

`watch` wires the station (``station.Station``) to its sinks: the inspection log, the evidence folder, the
lines on stdout and the operator's page; `log` lists what a station wrote.
"""
from __future__ import annotations

import csv
import json
import logging
import sys
import time
from pathlib import Path

import click

from .config import API_KEY_ENV, DEFAULT_LOG, DRIFT_DEFAULTS, SOURCE_ENV, ServeOptions, install_hint
from .console import (
    Number,
    csv_value,
    open_detector,
    quiet_opencv,
    stdout_gone,
    table_number,
    typed_on_command_line,
    writable_file,
    writable_folder,
)
from .errors import EXIT_FAILED, EXIT_UNUSABLE, EXIT_USAGE
from .imagefiles import readable

log = logging.getLogger(__name__)


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


@click.command(epilog="Exit codes: 0 stopped (SIGINT, SIGTERM, SIGHUP) or the video ended; 1 stopped, but some verdicts never "
                     "reached the log (they are on stdout), or stdout went with --no-log; 2 usage error, or a log or "
                     "evidence folder that cannot be opened; 3 the model cannot be used. Frames that fail are rows in "
                     "the log, not exit codes: a station keeps running.")
@click.argument("source", envvar=SOURCE_ENV)
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
@click.option("--recursive", is_flag=True, help="A folder: watch its subfolders too (a camera that writes into a "
              "folder of the day).")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Judge every N-th frame of a video or stream.")
@click.option("--per-part", is_flag=True, help="A free-running camera (a video or stream that sees each part for many "
              "frames): one verdict per part that passes, none for frames without a part.")
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
          expected_defect_rate: float, per_part: bool, recursive: bool) -> None:
    """Run an inspection station on SOURCE: a folder (new image files), a video file, a camera (an index, 0, or its
    device file: /dev/v4l/by-id/...) or a stream URL (rtsp://, http:// MJPEG). One line per verdict; every verdict
    in the log.

    SOURCE may come from $INSIGHTAD_SOURCE instead: a stream URL's password typed on the command line is shown
    to every user of the PC by `ps`; the environment is not."""
    import signal
    import sqlite3

    from . import systemd
    from .evidence import Evidence
    from .frames import Stop
    from .inspections import InspectionLog
    from .monitor import DriftMonitor
    from .passages import refuse_without_parts
    from .sources import check_options
    from .station import Station, own_files, summary_line

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
        check_options(source, existing=existing, stride=stride, per_part=per_part, recursive=recursive,
                      own=own_files(None if no_log else log_path, save))
    except (ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from None
    writable_file(None if no_log else log_path, "--log")
    writable_folder(save, "--save")
    quiet_opencv()
    detector = open_detector(model, threshold)
    if per_part:
        try:
            refuse_without_parts(detector.metadata)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--per-part") from None
    stop = Stop()
    # a closed terminal (SIGHUP) stops the line as cleanly as Ctrl-C: the log flushed, the summary printed
    stop.on_signals(signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []))
    monitor = DriftMonitor(detector.metadata, expected_defect_rate=expected_defect_rate)
    page = None if http_address is None else OperatorPage(detector, monitor, http_address, api_key,
                                                          None if no_log else log_path)
    try:
        inspection_log = None if no_log else InspectionLog(log_path, keep_days=log_keep_days,
                                                           model_sha256=detector.sha256,
                                                           model_created=detector.metadata.created)
    except (sqlite3.Error, ValueError, OSError) as exc:  # not a log, a newer one, no room, another station's: first
        click.echo(f"Error: cannot keep the inspection log at {log_path}: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if inspection_log is not None:
        click.echo(f"logging every verdict to {log_path}"
                   + ("" if log_keep_days is None else f", keeping {log_keep_days:g} days"), err=True)
    evidence = None if save is None else Evidence(
        save, max_bytes=None if save_max_gb is None else int(save_max_gb * 1e9), save_all=save_all)

    def announce(event) -> None:  # every event on stderr, and a source's state on the page
        click.echo(readable(f"{event.kind}: {event.message}"), err=True)  # as the log says it
        if page is not None:
            page.event(event)

    try:
        emit = VerdictPrinter(fmt, logged=not no_log).write
        station = Station(detector, monitor=monitor, log=inspection_log, evidence=evidence,
                          emit=emit if page is None else lambda v: (page.show(v), emit(v)),  # printed: on the page
                          on_event=announce, on_alive=lambda: systemd.notify("WATCHDOG=1"))
        if page is not None:
            page.sinks(inspection_log, evidence, station.model_file)
        systemd.notify("READY=1")  # under systemd (Type=notify): the line starts now
        counts = station.run(source, stop=stop, existing=existing, stride=stride, per_part=per_part,
                             recursive=recursive)
        systemd.notify("STOPPING=1")
    except FileNotFoundError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except OutputGone as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        for sink in (inspection_log, evidence, page):  # the log first: it is the record
            if sink is not None:
                sink.close()
    click.echo(f"watch stopped: {summary_line(counts, 'parts' if per_part else 'frames')}", err=True)
    if evidence is not None and evidence.failed:
        click.echo(f"Warning: the evidence of {evidence.failed} frames could not be written to {save} "
                   "(their log rows name no file, or one that does not exist)", err=True)
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

    def sinks(self, inspection_log, evidence, model_file) -> None:
        """Show on the page and in /metrics what the station's log and evidence folder cannot do now: a full
        disk would otherwise be seen only when the station stops and counts what never got in. The page also
        says while the model's file holds another model than the one that judges (``modelfile.FileWatch``)."""
        from .board import HOUR_S

        self.metrics.sinks(inspection_log, evidence)
        self.metrics.model_file(lambda: model_file.state == "same")

        def trouble() -> list[str]:
            found = []
            if inspection_log is not None and inspection_log.held:
                found.append(f"the log cannot be written: {inspection_log.held} verdicts wait in memory (a full disk?)")
            if inspection_log is not None and inspection_log.unwritten:
                found.append(f"{inspection_log.unwritten} verdicts never reached the log")
            if inspection_log is not None and (shortage := inspection_log.room.shortage()) is not None:
                found.append(shortage)
            if inspection_log is not None and (wrong := inspection_log.clock.wrong()) is not None:
                found.append(wrong)
            if evidence is not None and evidence.last_failed is not None and time.monotonic() - evidence.last_failed < HOUR_S:
                minutes = (time.monotonic() - evidence.last_failed) / 60  # an hour after the last, the banner goes
                found.append(f"the evidence of {evidence.failed} frames could not be written (the last {minutes:.0f} "
                             "min ago)")
            if model_file.state != "same":
                found.append(model_file.words())
            return found

        self.board.trouble = trouble

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
        if event.kind in ("unwatched", "ignored"):  # what its source does not watch, until the station stops
            self.board.warn(event.message)
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
            score, threshold = table_number(verdict.score), table_number(verdict.threshold)
            self._print(f"{verdict.time:<24}  {readable(verdict.frame)[-40:]:<40}  {verdict.status:<15}  {score:>10}  "
                        f"{threshold:>10}  {verdict.error or ''}")

    def _print(self, line: str) -> None:
        if self.gone:
            return
        try:
            click.echo(readable(line))  # a file name that is not UTF-8 must not end the station on a strict stdout
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


@click.command(name="log", epilog="Exit codes: 0 listed; 2 usage error (no file there, a bad time); 3 the file is not "
                                 "an inspection log.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--since", help="From this time: ISO 8601 (2026-11-29T06:00, local unless it says Z) or an age (8h, 2d).")
@click.option("--until", help="Before this time, same forms.")
@click.option("--status", type=click.Choice(["ok", "defect", "not_inspectable", "error"]))
@click.option("--summary", is_flag=True, help="Per hour: parts, defects, defect rate, not inspectable, errors, "
              "live frames skipped while busy, p95 latency.")
@click.option("--events", "list_events", is_flag=True,
              help="The events instead: start, stop, a source lost and back, a stall, drift, pruned, the model file "
                   "changed, the disk short of room, the clock wrong.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
def log_command(path: Path, since: str | None, until: str | None, status: str | None, summary: bool,
                list_events: bool, fmt: str) -> None:
    """List the verdicts (or a summary per hour, or the events) of an inspection log written by `watch`."""
    import sqlite3

    from . import inspections

    if list_events and (summary or status):
        raise click.UsageError("--events lists the events: not with --summary or --status")
    bounds = []
    for name, text in (("--since", since), ("--until", until)):
        try:
            bounds.append(None if text is None else inspections.parse_time(text))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=name) from None
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
        writer.writerows([[csv_value(row[k]) for k in keys] for row in rows])
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
        return table_number(value)
    return str(value)

