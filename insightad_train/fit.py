"""The training loop: cache the good images, fit the autoencoder, checkpoint each epoch, calibrate the threshold.

A run folder holds everything needed to resume, extend, evaluate or export: config.json, checkpoint.pt
(model, optimiser and epoch), history.json, and at the end model.pt (the AnomalyMapper: autoencoder plus
per-pixel error statistics of the good training images), holdout.json and metadata.json. metadata.json is taken
away before the others change and written last (``finish``): a run stopped between them is unfinished, never
new weights under the old threshold.
"""
from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import logging
import math
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from insightad_edge import __version__
from insightad_edge.errors import DataError, ImageError, ModelError
from insightad_edge.inspections import claim
from insightad_edge.metadata import CROP_MAX, ModelMetadata, Preprocess, Score, section_from_dict
from insightad_edge.preprocess import decode, lacks_colour, prepare_work, to_work

from . import augment as augmentation
from .anomalies import synthetic_validation
from .calibrate import MIN_HOLDOUT, measure
from .config import EXTENDABLE, FitConfig, saved_config
from .data import copies_among, fingerprint, load_dataset, not_read, refuse
from .loss import HybridLoss
from .model import AnomalyMapper, build_model
from .preprocessing import derive_preprocess, partless

log = logging.getLogger(__name__)
ANALYSIS_SIZE = 256   # short side of the copies the preprocessing is chosen on
MIN_TRAIN = 20        # fewer good images than this cannot teach an autoencoder what good looks like
MEMORY_SHARE = 0.7    # of the free memory, the most the cached good images may take (the model and batches need the rest)
DISK_FULL_BYTES = 1 << 20  # a write that fails with less free room than this on its disk failed for want of room


def select_device(name: str) -> torch.device:
    """``auto`` takes CUDA when there is one, else the CPU; ``cuda`` without one is refused, not a traceback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device cuda: torch {torch.__version__} finds no CUDA GPU here; use --device cpu or auto")
    return torch.device(name)


class TorchInfer:
    """An AnomalyMapper behind the same ``infer(inputs) -> anomaly maps`` call the edge's Detector has."""

    def __init__(self, mapper: AnomalyMapper, device: torch.device | str = "cpu"):
        self.mapper, self.device = mapper.to(device).eval(), torch.device(device)

    @torch.inference_mode()
    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(inputs, np.float32)).to(self.device)
        return self.mapper(x)[0].cpu().numpy()


def split_holdout(paths: tuple[Path, ...], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Deterministically set aside ``fraction`` (at least MIN_HOLDOUT) of the good images for calibration.

    Refuses data too small to both train (MIN_TRAIN) and calibrate (MIN_HOLDOUT) on.
    """
    count = max(MIN_HOLDOUT, round(fraction * len(paths)))
    if len(paths) - count < MIN_TRAIN:
        raise DataError(f"{len(paths)} good images are too few: insightad needs at least {MIN_TRAIN + MIN_HOLDOUT} "
                         f"({MIN_TRAIN} to train on and {MIN_HOLDOUT} held back to calibrate the threshold)")
    order = np.random.default_rng(seed).permutation(len(paths))
    held = sorted(paths[i] for i in order[:count])
    return [p for p in paths if p not in set(held)], held


def refuse_other_data(run: Path, data: str) -> None:
    """A run folder is one set of good images' (DATA's fingerprint): continued on images added since, its held-back
    split would move onto images it trained on, and the threshold be calibrated on them; its finished candidates
    would be reused as if trained on the new ones. Checked before anything in RUN changes."""
    for folder in (run, *sorted(run.glob("candidates/*"))):
        if (folder / "metadata.json").is_file():
            there = ModelMetadata.from_json((folder / "metadata.json").read_text()).data_fingerprint
        elif (folder / "checkpoint.pt").is_file():
            there = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True).get("data")
        else:
            continue
        if there and there != data:  # none recorded: a run from before fingerprints, read as it ran
            raise ValueError(f"{run} holds a run on other good images (data {there} there, {data} now): its held-back "
                             "images would no longer be ones it never trained on; use a new --out folder")


def refuse_unusable(paths: tuple[Path, ...], photometric: str) -> None:
    """Every good image must decode and show a part, checked before any training: a corrupt file would end the run
    at calibration, after its epochs, and a black frame or a flat empty fixture would end it unnamed; all that fail
    are named at once."""
    problems, readable = [], []
    for path in paths:
        try:
            readable.append((path, analysis_copy(decode(path))))
        except ImageError as exc:
            problems.append(str(exc))
    empty = partless([gray for _, gray in readable], photometric)
    problems += [f"{readable[i][0]} shows no part ({why})" for i, why in sorted(empty.items())]
    refuse(problems, len(paths), "good images")


def refuse_beyond_memory(count: int, work: np.ndarray) -> None:
    """Training keeps every good image at working size in memory: said before the first epoch when they would not
    fit in what the machine has free (MEMORY_SHARE of it), where the operating system would end the run once it
    had read them, saying nothing of why (20 000 colour images at 384x384 take 35 GB)."""
    need, free = count * work.nbytes, available_memory()
    if free is not None and need > MEMORY_SHARE * free:
        raise DataError(f"{count} good images at {work.shape[1]}x{work.shape[0]} take {need / 1e9:.1f} GB of memory to "
                        f"train on, and this machine has {free / 1e9:.1f} GB free: fit on fewer of them (a few hundred "
                        "to a few thousand show how good parts vary), or on a machine with more memory")


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux's MemAvailable); None where it does not say."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def refuse_copies(paths: tuple[Path, ...]) -> None:
    """Exact copies teach nothing of how good parts vary, and a held-back copy of a training image scores lower
    than a new good part would: too few different pictures are refused, a few copies are named in a warning."""
    copies = copies_among(paths)
    if copies and len(paths) - copies < MIN_TRAIN + MIN_HOLDOUT:
        raise DataError(f"the {len(paths)} good images hold only {len(paths) - copies} different pictures ({copies} "
                        f"are exact copies of others): insightad needs at least {MIN_TRAIN + MIN_HOLDOUT} different ones")
    if copies:
        log.warning("%d of the %d good images are exact copies of others: they teach nothing new, and a held-back copy "
                    "of a training image makes the threshold lower than new good parts need", copies, len(paths))


def build_scorer(config: FitConfig, spec: Preprocess) -> torch.nn.Module:
    """The configured model for this preprocessing (a patch's place counts only where parts are aligned)."""
    return build_model(config.arch, spec.input_size, spec.channels, config.width,
                       place=config.place if spec.align != "none" else 0.0, context=config.context)


def build_mapper(config: FitConfig, spec: Preprocess) -> AnomalyMapper:
    return AnomalyMapper(build_scorer(config, spec), spec.input_size, pre_sigma=config.error_blur_sigma)


def load_run(run: Path, device: str = "cpu") -> tuple[AnomalyMapper, ModelMetadata]:
    """The trained model (as the graph that gets exported) and its metadata from a finished run folder."""
    if not (run / "model.pt").is_file() or not (run / "metadata.json").is_file():
        raise ModelError(f"{run} is not a finished training run (no model.pt / metadata.json): run fit first")
    metadata = ModelMetadata.from_json((run / "metadata.json").read_text())
    config = saved_config(json.loads((run / "config.json").read_text()))
    mapper = build_mapper(config, metadata.preprocess)
    mapper.load_state_dict(torch.load(run / "model.pt", map_location=device, weights_only=True))
    return mapper.eval(), metadata


def fit(config: FitConfig, run: Path, *, device: str = "auto", time_budget_s: float | None = None,
        progress: bool = True) -> ModelMetadata | None:
    """Train, resume or extend a run; the metadata with its calibrated threshold, or None if the time budget ran out.

    ``arch`` "auto" fits the candidate recipes and keeps the best on synthetic defects (``search.py``).
    """
    good = load_dataset(Path(config.data)).train
    for unread in not_read(good[0].parent):
        log.warning("skipped among the good images: %s", unread)
    refuse_other_data(run, fingerprint(good))
    refuse_unusable(good, config.photometric)
    refuse_copies(good)
    run.mkdir(parents=True, exist_ok=True)
    with claimed(run):
        if config.arch == "auto":
            from .search import search

            return search(config, run, fit_one, device=device, time_budget_s=time_budget_s, progress=progress)
        return fit_one(config, run, device=device, time_budget_s=time_budget_s, progress=progress)


@contextmanager
def claimed(run: Path):
    """RUN for this fit alone while it runs: a second fit on the same folder (another terminal, a retrain scheduled
    over a manual one) took up the first's checkpoints, interleaved their epochs, and could end the run with one's
    weights under the other's metadata. Refused before anything in RUN changes."""
    descriptor = claim(run / "fit.lock", f"another fit is running in {run}: wait for it to end, or use another --out")
    try:
        yield
    finally:
        os.close(descriptor)


def fit_one(config: FitConfig, run: Path, *, device: str = "auto", time_budget_s: float | None = None,
            progress: bool = True) -> ModelMetadata | None:
    """One recipe (``arch`` not "auto"): what ``fit`` says, on data it has checked."""
    run.mkdir(parents=True, exist_ok=True)
    torch_device = select_device(device)
    dataset = load_dataset(Path(config.data))
    train_paths, holdout_paths = split_holdout(dataset.train, config.holdout, config.seed)
    log.info("%d good images: %d to train on, %d held back to calibrate", len(dataset.train), len(train_paths),
             len(holdout_paths))
    data = fingerprint(dataset.train)
    state = load_checkpoint(run, config)
    if state is None:
        spec, choices = choose_preprocess(config, train_paths)
        (run / "choices.json").write_text(json.dumps(choices, indent=1))
    else:
        spec = section_from_dict(Preprocess, state["preprocess"])
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    log.info("preprocessing: %s", spec)
    first = to_work(decode(train_paths[0], spec.channels), spec)
    refuse_beyond_memory(len(train_paths), first)
    works = [first] + [to_work(decode(p, spec.channels), spec) for p in train_paths[1:]]
    model = train(config, spec, works, state, run, torch_device, time_budget_s, progress, data)
    if model is None:
        return None
    mapper = finish_mapper(config, spec, model, works, torch_device)
    metadata = describe(config, spec, dataset, TorchInfer(mapper, torch_device), holdout_paths, data)
    validation = synthetic_validation(metadata, TorchInfer(mapper, torch_device), holdout_paths, config.seed)
    with finish(run, metadata):
        (run / "validation.json").write_text(json.dumps(validation, indent=1))
        save_atomic(mapper.cpu().state_dict(), run / "model.pt")
        (run / "holdout.json").write_text(json.dumps([str(p) for p in holdout_paths], indent=1))
    return metadata


def load_checkpoint(run: Path, config: FitConfig) -> dict | None:
    """The run's checkpoint, if any; refused when it was trained with another configuration (more epochs is fine)."""
    path = run / "checkpoint.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    before = {k: v for k, v in dataclasses.asdict(saved_config(state["config"])).items() if k not in EXTENDABLE}
    now = {k: v for k, v in dataclasses.asdict(config).items() if k not in EXTENDABLE}
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        differ = ", ".join(f"{k} {before.get(k)!r} there, {now.get(k)!r} now" for k in changed)
        raise ValueError(f"{run} holds a run with another configuration ({differ}); ask for its values to go on "
                         "with it, or use a new --out folder")
    if state["epoch"] + 1 > config.epochs:
        raise ValueError(f"{run} already trained {state['epoch'] + 1} epochs; ask for more to continue it")
    log.info("continuing %s after epoch %d", run, state["epoch"] + 1)
    return state


def analysis_copy(frame: np.ndarray) -> np.ndarray:
    """The frame at ANALYSIS_SIZE on its short side, aspect kept: what every preprocessing choice measures."""
    scale = ANALYSIS_SIZE / min(frame.shape[:2])
    return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def choose_preprocess(config: FitConfig, paths: list[Path]) -> tuple[Preprocess, dict]:
    """Measure the training frames (kept at their aspect) and choose the preprocessing; and what was chosen, why."""
    sizes, analysis = [], []
    for path in paths:
        frame = decode(path, channels=3)
        sizes.append(frame.shape[:2])
        analysis.append(analysis_copy(frame))
    frame_size = max(set(sizes), key=sizes.count)
    if sizes.count(frame_size) < len(sizes):
        log.warning("training frames differ in size; the model's reference is the most common, %dx%d",
                    frame_size[1], frame_size[0])
        analysis = [a for a, size in zip(analysis, sizes) if size == frame_size]
    if (aspect := max(frame_size) / min(frame_size)) > CROP_MAX:
        raise DataError(f"the training frames are {frame_size[1]}x{frame_size[0]}, {aspect:.0f} times as long as they "
                        f"are wide: insightad takes frames up to {CROP_MAX:g}:1 whole (a line-scan camera's strip); cut "
                        "each into pieces no longer than that, and train on them and judge them so")
    channels, colour_why = choose_channels(analysis, config.colour)
    colourless = sum(lacks_colour(a) for a in analysis) if channels == 3 else 0
    if colourless:
        log.warning("%d of the %d training images are gray, but the model judges colour: the edge refuses gray "
                    "frames, so take them out, or fit with --colour gray", colourless, len(analysis))
    gray = [cv2.cvtColor(a, cv2.COLOR_BGR2GRAY) for a in analysis]
    spec, align_why = derive_preprocess(gray, config.image_size, frame_size, config.align, config.photometric, channels)
    section_from_dict(Preprocess, dataclasses.asdict(spec))  # refused now as the model would be, not after training
    choices = {"colour": f"{'colour' if channels == 3 else 'gray'}: {colour_why}",
               "align": f"{spec.align}: {align_why}",
               "frame": f"{frame_size[1]}x{frame_size[0]} frames -> {spec.input_size[1]}x{spec.input_size[0]} input"}
    for key, value in choices.items():
        log.info("%s: %s", key, value)
    return spec, choices


COLOURFUL = 0.10  # chroma spread over gray spread above which colour carries what gray loses
CHROMA_SIGMA = 4.0  # blur (pixels of the analysis copies) that leaves a scene's colours and removes sensor noise


def choose_channels(frames: list[np.ndarray], colour: str) -> tuple[int, str]:
    """3 (colour) or 1 (gray), and why: asked for, or, with ``auto``, colour when the frames' chroma varies by
    more than COLOURFUL of their gray level's variation (gray images stored as RGB have none). Both are
    measured on blurred copies: a dark frame's per-channel sensor noise is chroma too, but not colour."""
    if colour != "auto":
        return (3 if colour == "colour" else 1), "asked for"
    ratios = []
    for frame in frames:
        frame = cv2.GaussianBlur(frame, (0, 0), CHROMA_SIGMA)
        b, g, r = cv2.split(frame)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        ratios.append(float(np.hypot(np.std(b - g), np.std(r - g)) / (np.std(gray) + 1e-6)))
    ratio = float(np.median(ratios))
    return (3 if ratio > COLOURFUL else 1), f"chroma spread {ratio:.2f} of the gray spread (colour above {COLOURFUL})"


def learning_rate(config: FitConfig, epoch: int) -> float:
    """Exponential decay per epoch: the same for epoch e whatever the total, so a run can be extended exactly."""
    return config.learning_rate * config.lr_decay ** epoch


def train(config: FitConfig, spec: Preprocess, works: list[np.ndarray], state: dict | None, run: Path,
          device: torch.device, time_budget_s: float | None, progress: bool, data: str):
    """The training epochs (from the checkpoint's, if any); the autoencoder, or None when the budget ran out."""
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = build_scorer(config, spec).to(device)
    if config.arch == "patchknn":  # no epochs: a PCA and a memory bank of the good images' patches
        began = time.monotonic()
        model.fit_on(torch.from_numpy(np.stack([prepare_work(work, spec)[0] for work in works])).to(device),
                     seed=config.seed)
        (run / "history.json").write_text(json.dumps([{"bank_from_images": len(works),
                                                       "seconds": time.monotonic() - began}], indent=1))
        return model.eval()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history, start = [], 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        history, start = state["history"], state["epoch"] + 1
    loss_fn = HybridLoss(config.alpha)
    ranges = augmentation.PRESETS[config.augment]
    began = time.monotonic()
    for epoch in range(start, config.epochs):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, epoch)
        history.append(train_epoch(model, optimiser, loss_fn, works, spec, ranges, config, epoch, device, progress))
        log.info("epoch %d: loss %.5f, %.1f s", epoch + 1, history[-1]["loss"], history[-1]["seconds"])
        if not math.isfinite(history[-1]["loss"]):  # every later epoch, and the threshold, would be NaN too
            raise ModelError(f"training diverged: the loss is {history[-1]['loss']} after epoch {epoch + 1} at a learning "
                             f"rate of {learning_rate(config, epoch):g}; fit again with a smaller --learning-rate")
        save_atomic({"config": dataclasses.asdict(config), "preprocess": dataclasses.asdict(spec),
                      "model": model.state_dict(), "optimiser": optimiser.state_dict(),
                      "epoch": epoch, "history": history, "data": data}, run / "checkpoint.pt")
        (run / "history.json").write_text(json.dumps(history, indent=1))
        if time_budget_s is not None and time.monotonic() - began > time_budget_s and epoch + 1 < config.epochs:
            log.warning("time budget spent after epoch %d of %d; resume with the same command", epoch + 1,
                        config.epochs)
            return None
    return model.eval()


def train_epoch(model, optimiser, loss_fn, works, spec, ranges, config: FitConfig, epoch: int, device,
                progress: bool) -> dict:
    """One pass over the good images in a seeded order with seeded augmentation; the epoch's history entry."""
    model.train()
    rng = np.random.default_rng([config.seed, epoch])
    torch.manual_seed(config.seed * 100_003 + epoch)
    order = rng.permutation(len(works))
    batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    total, t0 = 0.0, time.monotonic()
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
    for batch in bar:
        inputs = np.stack([prepare_work(augmentation.augment(works[i], rng, ranges), spec)[0] for i in batch])
        loss = train_step(model, optimiser, loss_fn, torch.from_numpy(inputs).to(device))
        total += loss * len(batch)
        bar.set_postfix(loss=f"{loss:.4f}")
    return {"epoch": epoch + 1, "loss": total / len(works), "seconds": time.monotonic() - t0}


def train_step(model, optimiser, loss_fn, x: torch.Tensor) -> float:
    """One gradient step of the autoencoder redrawing ``x``; the batch's loss."""
    loss = loss_fn(model(x), x)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss.item()


def epoch_seconds(config: FitConfig, spec: Preprocess, n_images: int, device: str = "cpu") -> float:
    """About how long one training epoch of ``n_images`` takes here: the fastest of a few timed steps of the
    untrained model on a full batch, times the batches (a patch scorer has no epochs: 0)."""
    if config.arch == "patchknn":
        return 0.0
    model = build_scorer(config, spec).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = HybridLoss(config.alpha)
    x = torch.rand(config.batch_size, spec.channels, *spec.input_size, device=device)
    steps = []
    for _ in range(3):
        began = time.monotonic()
        train_step(model, optimiser, loss_fn, x)
        steps.append(time.monotonic() - began)
    return min(steps) * -(-n_images // config.batch_size)


def finish_mapper(config: FitConfig, spec: Preprocess, model, works, device) -> AnomalyMapper:
    """The exported graph: the trained autoencoder plus, if asked, its per-pixel error statistics on good images."""
    mapper = build_mapper(config, spec)
    mapper.autoencoder.load_state_dict(model.state_dict())
    mapper = mapper.to(device).eval()
    if standardised(config):
        inputs = np.stack([prepare_work(work, spec)[0] for work in works])
        mapper.standardise_on(torch.from_numpy(inputs[i:i + config.batch_size]).to(device)
                              for i in range(0, len(inputs), config.batch_size))
    return mapper


def standardised(config: FitConfig) -> bool:
    """Per-pixel standardisation evens out an autoencoder's always-hard pixels; a patch scorer's distances are
    already relative to the good patches (and its own training patches would bias the statistics to zero)."""
    return config.pixel_stats and config.arch != "patchknn"


def describe(config: FitConfig, spec: Preprocess, dataset, infer, holdout: list[Path], data: str) -> ModelMetadata:
    """The model's contract: preprocessing, score, threshold, inspection limits and drift reference."""
    metadata = ModelMetadata(
        preprocess=spec, score=Score(blur_sigma=config.blur_sigma, border=config.score_border,
                                     pixel_standardised=standardised(config)),
        arch=config.arch, category=dataset.category, data_fingerprint=data,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        package_version=__version__)
    return measure(metadata, infer, dataset.train, holdout, dataset.validation, config.threshold_quantile)


@contextmanager
def finish(run: Path, metadata: ModelMetadata):
    """While the block writes a finished run's files, RUN has no metadata.json; it is written last, whole. Stopped
    between model.pt and metadata.json, an extended run (or a search keeping another candidate) held the new weights
    under the old metadata, which `export` sealed as one model: another threshold, even another preprocessing."""
    (run / "metadata.json").unlink(missing_ok=True)
    yield
    partial = run / "metadata.json.partial"
    partial.write_text(metadata.to_json())
    os.replace(partial, run / "metadata.json")


def save_atomic(state: dict, path: Path) -> None:
    """Write next to the target and rename, so an interruption never leaves a half-written file. A write that
    fails leaves nothing behind and is an OSError, said in one line: torch's writer says a full disk as a
    RuntimeError of its own (``unexpected pos 2606592 vs 2606480``), which ended a fit in a traceback."""
    partial = path.with_suffix(".partial")
    try:
        torch.save(state, partial)
    except (OSError, RuntimeError) as exc:
        full = shutil.disk_usage(path.parent).free < DISK_FULL_BYTES  # while the partial file still holds its room
        partial.unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, f"no room left on the disk to write {path}") from None
        raise OSError(f"could not write {path}: {str(exc).strip().splitlines()[-1]}") from None
    os.replace(partial, path)
