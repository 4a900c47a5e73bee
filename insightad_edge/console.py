"""What both command-line tools share: their group, option types, output checks and how a model is opened.

Only the CLIs turn errors into exit codes and messages (``errors.EXIT_CODES_HELP``); these helpers do it the
same way for every command, so a full disk or a mistyped path reads alike in `insightad-edge` and
`insightad-train`.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path

import click

from .errors import EXIT_FAILED, EXIT_UNUSABLE, ModelError

log = logging.getLogger("insightad_edge")


class Commands(click.Group):
    """The commands, with what the machine refuses them (a full disk, the reader of stdout gone) said in one line
    with exit 1, not as a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            log.info("the command failed here", exc_info=True)  # shown with -v
            stdout_gone()  # were it stdout that failed, Python's flush at exit would fail again
            reason = "the reader of stdout has gone" if isinstance(exc, BrokenPipeError) else exc.strerror or str(exc)
            click.echo(f"Error: {reason}" + (f": {exc.filename}" if exc.filename else ""), err=True)
            ctx.exit(EXIT_FAILED)


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


def quiet_opencv() -> None:
    """OpenCV prints decoder warnings straight to stderr; the row's error already says what went wrong."""
    import cv2

    if opencv_log := getattr(cv2.utils, "logging", None):  # OpenCV 4.14 and 5
        opencv_log.setLogLevel(opencv_log.LOG_LEVEL_SILENT)
    else:  # older OpenCV 4: the same call at the top level, with SILENT as 0
        cv2.setLogLevel(0)


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


def open_detector(model: Path | None, threshold: float | None = None, threads: int | None = None):
    """The Detector for MODEL (None: $INSIGHTAD_MODEL or the shipped one); a model that cannot be used is exit 3,
    and what the model warns of (no seal, a rough threshold) is said before any work."""
    from .detector import Detector

    try:
        detector = Detector(model, threshold=threshold, threads=threads)
    except ModelError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_UNUSABLE)
    for warning in detector.warnings:
        log.warning("%s: %s", detector.path.name, warning)
    return detector


def stdout_gone() -> None:
    """Point stdout at nothing, so neither later prints nor Python's flush at exit raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def table_number(value: float | None) -> str:
    """A score, threshold or time in a table: six significant digits, whatever the model's scale (a patch model's
    threshold can be 0.000198, which a fixed four decimals showed as 0.0002, the same as the score above it)."""
    return "" if value is None else f"{value:.6g}"


def csv_value(value) -> str:
    """CSV cells as JSON writes them: true/false, an empty cell for none."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, bool) else str(value)
