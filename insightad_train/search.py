"""`fit --arch auto`: train a few candidate recipes and keep the one that separates synthetic defects best.

No test label is used: each candidate is fitted like any run (in RUN/candidates/NAME), its threshold
calibrated on the held-back good images, then scored on synthetic defects made from those same images
(``anomalies.py``). A candidate whose edge path is too slow for a line (over ``PATH_MS`` for a 1024x1024
frame, more in proportion for larger frames, whose decoding alone grows with their pixels; or over
``MODEL_MS`` for the model alone; timed here through onnxruntime, fastest of repeated runs) is not
admissible. A model's speed does not depend on its weights, so a candidate whose untrained graph is already
too slow is not trained at all: it costs the search seconds, not a training run. The table is saved as
RUN/search.json and printed; the chosen candidate's files are copied to RUN, so `export` and `evaluate`
read RUN as any other run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from insightad_edge.detector import Detector, run_pipeline
from insightad_edge.metadata import ModelMetadata
from insightad_edge.preprocess import decode, prepare

from .config import CANDIDATES, SEARCH_MINUTES, UNALIGNED, FitConfig, saved_config
from .fit import finish

log = logging.getLogger(__name__)
PATH_MS, MODEL_MS = 25.0, 10.0           # what a line can wait for one 1024x1024 frame on the edge PC
RESOLUTION = 0.03  # synthetic AUROCs closer than this rank recipes as the real test does little better than a coin
                   # (screw: 24 of 38 such pairs, against 80 of 82 pairs further apart; docs/experiments.md)
RUN_FILES = ("config.json", "model.pt", "holdout.json", "validation.json", "choices.json", "history.json")  # and
# metadata.json, written last (fit.finish)


def search(config: FitConfig, run: Path, fit_one, time_budget_s: float | None = None,
           **fit_options) -> ModelMetadata | None:
    """Fit every candidate that fits the time budget, time and compare them, keep the best admissible one in RUN.

    When the parts were aligned, a patch scorer on the whole unaligned frame is one more candidate (a minute's
    fit): should the alignment's self-checks have passed on a part they misread, the synthetic defects show it.
    A candidate is not started when its training would outlast what is left of the budget (SEARCH_MINUTES
    unless told otherwise); the same command run again trains it with a fresh budget, keeping those finished.
    """
    budget = SEARCH_MINUTES * 60.0 if time_budget_s is None else time_budget_s
    began, rows, first = time.monotonic(), [], None
    queue = [(arch, dataclasses.replace(config, arch=arch)) for arch in CANDIDATES]
    with each_said_once("insightad_train.fit", "insightad_train.calibrate"):  # the candidates share the data
        while queue:
            name, candidate = queue.pop(0)
            folder = run / "candidates" / name
            row = {"recipe": name, "arch": candidate.arch, "align": first.preprocess.align if first else None,
                   "synthetic_auroc": None, "by_kind": None, "caught_at_threshold": None, "model_ms": None,
                   "path_ms": None, "admissible": False, "too_slow": None, "not_trained": None}
            metadata = _finished(folder, candidate)
            reused = metadata is not None
            left = budget - (time.monotonic() - began)
            if metadata is None and first is not None:
                row["model_ms"], row["not_trained"] = _precheck(candidate, config, first, folder, left, budget)
                if row["not_trained"]:
                    log.info("%s not trained: %s", name, row["not_trained"])
                    rows.append(row)
                    continue
            if metadata is None:
                metadata = fit_one(candidate, folder, time_budget_s=max(left, 0.0), **fit_options)
            if metadata is None:  # stopped inside this candidate's epochs: its checkpoint waits for the next run
                rows.append({**row, "not_trained": "stopped by the time budget: run again to go on"})
                continue
            if first is None and config.align == "auto" and metadata.preprocess.align != "none":
                queue.append((f"{UNALIGNED}-unaligned", dataclasses.replace(config, arch=UNALIGNED, align="none")))
            first = first or metadata
            rows.append({**row, "align": metadata.preprocess.align, **_measure(folder, metadata, row["model_ms"], reused)})
    trained = [r for r in rows if r["synthetic_auroc"] is not None]
    if not trained:
        return None
    best = max([r for r in trained if r["admissible"]] or trained,
               key=lambda r: (round(r["synthetic_auroc"], 3), -r["path_ms"]))
    for row in rows:
        row["chosen"] = row is best
    (run / "search.json").write_text(json.dumps(rows, indent=1))
    kept = run / "candidates" / best["recipe"]
    metadata = ModelMetadata.from_json((kept / "metadata.json").read_text())
    with finish(run, metadata):
        for name in RUN_FILES:
            shutil.copy2(kept / name, run / name)
    log.info("kept %s: synthetic-defect AUROC %.3f", best["recipe"], best["synthetic_auroc"])
    return metadata


@contextmanager
def each_said_once(*loggers: str):
    """Each message of these loggers once while the block runs: what fitting says of the data (a stray image, few
    held-back images) would otherwise be said again for every candidate."""
    said: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        new = message not in said
        said.add(message)
        return new

    for name in loggers:
        logging.getLogger(name).addFilter(first_time)
    try:
        yield
    finally:
        for name in loggers:
            logging.getLogger(name).removeFilter(first_time)


def table(run: Path) -> list[str]:
    """The search's table as lines of text."""
    rows = json.loads((run / "search.json").read_text())
    lines = ["candidate           pose           synthetic AUROC  caught at threshold  model ms  path ms  admissible"]
    for r in rows:
        if r["synthetic_auroc"] is None:
            model_ms = "–" if r["model_ms"] is None else f"{r['model_ms']:.1f}"
            lines.append(f"{r['recipe']:<19} {r['align'] or '–':<14} {'–':>15}  {'–':>19}  {model_ms:>8}  {'–':>7}  "
                         f"no ({r['not_trained']})")
            continue
        lines.append(f"{r['recipe']:<19} {r['align']:<14} {r['synthetic_auroc']:>15.3f}  {r['caught_at_threshold']:>19.0%}  "
                     f"{r['model_ms']:>8.1f}  {r['path_ms']:>7.1f}  "
                     + ("yes" if r["admissible"] else f"no ({r.get('too_slow') or 'too slow'})")
                     + ("  <- kept" if r["chosen"] else ""))
    if not any(r["admissible"] for r in rows):
        lines.append("no candidate is fast enough for a line: kept the best on synthetic defects anyway; the line "
                     "needs a faster PC, a smaller --image-size (the model's input) or smaller frames (decoding)")
    kept = next(r for r in rows if r["chosen"])
    close = [r["recipe"] for r in rows if not r["chosen"] and r["admissible"] == kept["admissible"]
             and r["synthetic_auroc"] is not None and kept["synthetic_auroc"] - r["synthetic_auroc"] < RESOLUTION]
    if close:
        lines.append(f"a close call: {', '.join(close)} within {RESOLUTION} of the kept one on synthetic defects, which "
                     "this validation does not resolve; with real defective images at hand, `evaluate` "
                     f"{run}/candidates/NAME too, and `export` the better one")
    return lines


def _finished(folder: Path, config: FitConfig) -> ModelMetadata | None:
    """A candidate already fitted with this configuration (a rerun of the same command skips it)."""
    try:
        same = saved_config(json.loads((folder / "config.json").read_text())) == config
        return ModelMetadata.from_json((folder / "metadata.json").read_text()) if same and (
            folder / "validation.json").is_file() else None
    except (OSError, ValueError, TypeError):  # TypeError: a config.json with a field FitConfig does not know
        return None


def _measure(folder: Path, metadata: ModelMetadata, untrained_ms: float | None = None, reused: bool = False) -> dict:
    """The candidate's synthetic-defect AUROC, its edge times and whether they fit a line.

    ``untrained_ms`` is the same graph's model stage timed before training: the faster of the two stands, so a
    busier moment cannot reject, after a training of many minutes, a model the precheck admitted. A candidate
    ``reused`` from an earlier run keeps the times measured then (RUN/candidates/NAME/measured.json): timed
    again, a path a millisecond from the limit can fall on its other side, and the same command would then
    choose another model.
    """
    measured = folder / "measured.json"
    if reused and measured.is_file():
        times = json.loads(measured.read_text())
    else:
        times = _edge_times(folder, metadata, untrained_ms)
        measured.write_text(json.dumps(times, indent=1))
    model_ms, path_ms = times["model_ms"], times["path_ms"]
    height, width = metadata.preprocess.frame_size
    path_limit = path_limit_ms(metadata.preprocess.frame_size)
    too_slow = []
    if model_ms > MODEL_MS:
        too_slow.append(f"model {model_ms:.1f} ms > {MODEL_MS:g}")
    if path_ms > path_limit:
        too_slow.append(f"path {path_ms:.1f} ms > {path_limit:.1f} for a {width}x{height} frame")
    validation = json.loads((folder / "validation.json").read_text())
    return {"synthetic_auroc": validation["auroc"], "by_kind": validation["by_kind"],
            "caught_at_threshold": validation["caught_at_threshold"], "model_ms": model_ms, "path_ms": path_ms,
            "admissible": not too_slow, "too_slow": "; ".join(too_slow) or None}


def _edge_times(folder: Path, metadata: ModelMetadata, untrained_ms: float | None) -> dict:
    """The candidate exported to ONNX and timed through onnxruntime: its model stage, and its whole path on a few
    held-back frames (median of each frame's fastest)."""
    from .export import export

    model = folder / "model.onnx"
    export(folder, model)
    detector = Detector(model)
    holdout = [Path(p) for p in json.loads((folder / "holdout.json").read_text())][:4]
    blobs = [p.read_bytes() for p in holdout]
    inputs = prepare(decode(blobs[0], metadata.preprocess.channels), metadata.preprocess).input[None]
    model_ms = min(_fastest_ms(lambda: detector.infer(inputs), 20), untrained_ms or np.inf)
    path_ms = statistics.median(_fastest_ms(lambda blob=blob: run_pipeline(
        [blob], detector.metadata, detector.threshold, detector.infer, not_inspectable="report"), 5) for blob in blobs)
    return {"model_ms": model_ms, "path_ms": path_ms}


def path_limit_ms(frame_size: tuple[int, int]) -> float:
    """PATH_MS for frames up to 1024x1024, in proportion to the pixels above: decoding grows with them, and it is
    the camera's, not the candidate's."""
    return PATH_MS * max(1.0, frame_size[0] * frame_size[1] / 1024**2)


def _precheck(candidate: FitConfig, config: FitConfig, first: ModelMetadata, folder: Path, left: float,
              budget: float) -> tuple[float | None, str | None]:
    """The candidate's untrained model-stage time (when it shares the first candidate's preprocessing) and why
    it should not be started, if it should not: too slow for the line whatever its weights, or a training that
    would outlast what is left of the budget."""
    same_preprocessing = candidate.align == config.align
    model_ms = _untrained_model_ms(candidate, dataclasses.replace(first, arch=candidate.arch),
                                   folder.parent) if same_preprocessing else None
    if model_ms is not None and model_ms > MODEL_MS:
        return model_ms, f"too slow: its model stage takes {model_ms:.1f} ms"
    if left <= 0:
        return model_ms, f"the {budget / 60:g} min time budget is spent: run again to train it"
    needed = _training_seconds(candidate, first.preprocess, folder) if same_preprocessing else 0.0
    if needed > left:
        return model_ms, (f"its training needs about {needed / 60:.0f} min, {left / 60:.0f} of the {budget / 60:g} "
                          "min time budget left: run again to train it")
    return model_ms, None


def _training_seconds(config: FitConfig, spec, folder: Path) -> float:
    """About how long the candidate's remaining epochs take (a patch scorer has none)."""
    from .data import load_dataset
    from .fit import epoch_seconds, split_holdout

    try:
        done = len(json.loads((folder / "history.json").read_text()))
    except (OSError, ValueError):
        done = 0
    if done >= config.epochs:
        return 0.0
    train, _ = split_holdout(load_dataset(Path(config.data)).train, config.holdout, config.seed)
    return (config.epochs - done) * epoch_seconds(config, spec, len(train))


def _untrained_model_ms(config: FitConfig, metadata: ModelMetadata, scratch: Path) -> float:
    """The model stage's time of the candidate's graph with its initial weights (as fast as the trained one)."""
    from .export import write_onnx
    from .fit import build_mapper

    model = scratch / f"{config.arch}-untrained.onnx"
    write_onnx(build_mapper(config, metadata.preprocess), metadata, model)
    detector = Detector(model)
    model.unlink()
    spec = metadata.preprocess
    inputs = np.zeros((1, spec.channels, *spec.input_size), np.float32)
    return _fastest_ms(lambda: detector.infer(inputs), 20)


def _fastest_ms(call, repeats: int) -> float:
    """The fastest of ``repeats`` calls: what the code costs, least disturbed by whatever else the machine runs
    (a training machine is rarely quiet; the line PC runs nothing else)."""
    call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000.0)
    return float(np.min(times))
