"""The training loop: cache the good images, fit the autoencoder, checkpoint each epoch, calibrate the threshold.

A run folder holds everything needed to resume, evaluate or export: config.json, checkpoint.pt
(model, optimiser and epoch), history.json, and at the end model.pt (the AnomalyMapper: autoencoder plus
per-pixel error statistics of the good training images) and metadata.json.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from insightad_edge import __version__
from insightad_edge.detector import run_pipeline
from insightad_edge.metadata import ModelMetadata, Preprocess, Score, section_from_dict
from insightad_edge.preprocess import decode, prepare_work, to_work

from . import augment as augmentation
from .calibrate import quantile_threshold, youden_threshold
from .data import load_dataset, fingerprint
from .loss import HybridLoss
from .model import AnomalyMapper, build_model
from .preprocessing import derive_preprocess

log = logging.getLogger(__name__)
ANALYSIS_SIZE = 256


@dataclass(frozen=True)
class FitConfig:
    """Everything that decides a training run; written to RUN/config.json and checked on resume."""

    data: str
    arch: str = "bottleneck"
    width: float = 0.5
    image_size: int = 256
    epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 1e-3
    alpha: float = 0.84
    seed: int = 0
    augment: str = "light"
    align: str = "auto"
    photometric: str = "median_scale"
    holdout: float = 0.1
    threshold_quantile: float = 0.99
    pixel_stats: bool = True
    error_blur_sigma: float = 2.0
    blur_sigma: float = 4.0
    score_border: int = 0


def select_device(name: str) -> torch.device:
    """``auto`` takes CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
    """Deterministically set aside ``fraction`` of the good training images for threshold calibration."""
    order = np.random.default_rng(seed).permutation(len(paths))
    count = min(len(paths) - 1, max(1, round(fraction * len(paths)))) if fraction > 0 else 0
    held = sorted(paths[i] for i in order[:count])
    return [p for p in paths if p not in set(held)], held


def build_mapper(config: FitConfig, spec: Preprocess) -> AnomalyMapper:
    autoencoder = build_model(config.arch, spec.input_size, spec.channels, config.width)
    return AnomalyMapper(autoencoder, spec.input_size, pre_sigma=config.error_blur_sigma)


def load_run(run: Path, device: str = "cpu") -> tuple[AnomalyMapper, ModelMetadata]:
    """The trained model (as the graph that gets exported) and its metadata from a finished run folder."""
    if not (run / "model.pt").is_file() or not (run / "metadata.json").is_file():
        raise FileNotFoundError(f"{run} is not a finished training run (no model.pt / metadata.json): run fit first")
    metadata = ModelMetadata.from_json((run / "metadata.json").read_text())
    config = FitConfig(**json.loads((run / "config.json").read_text()))
    mapper = build_mapper(config, metadata.preprocess)
    mapper.load_state_dict(torch.load(run / "model.pt", map_location=device, weights_only=True))
    return mapper.eval(), metadata


def fit(config: FitConfig, run: Path, *, device: str = "auto", time_budget_s: float | None = None,
        progress: bool = True) -> ModelMetadata | None:
    """Train (or resume) a run; the metadata with its calibrated threshold, or None if the time budget ran out."""
    run.mkdir(parents=True, exist_ok=True)
    torch_device = select_device(device)
    dataset = load_dataset(Path(config.data))
    train_paths, holdout_paths = split_holdout(dataset.train, config.holdout, config.seed)
    checkpoint_path = run / "checkpoint.pt"
    state = None
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if state["config"] != dataclasses.asdict(config):
            raise ValueError(f"{run} holds a run with another configuration; use a new --out folder")
        spec = section_from_dict(Preprocess, state["preprocess"])
        log.info("resuming %s after epoch %d", run, state["epoch"] + 1)
    else:
        analysis = [cv2.resize(decode(p), (ANALYSIS_SIZE, ANALYSIS_SIZE), interpolation=cv2.INTER_AREA)
                    for p in train_paths]
        spec = derive_preprocess(analysis, config.image_size, config.align, config.photometric)
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    log.info("preprocessing: %s", spec)

    works = [to_work(decode(p), spec) for p in train_paths]
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = build_model(config.arch, spec.input_size, spec.channels, config.width).to(torch_device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(config.epochs, 1))
    history: list[dict] = []
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        history, start = state["history"], state["epoch"] + 1
    loss_fn = HybridLoss(config.alpha)
    ranges = augmentation.PRESETS[config.augment]
    began = time.monotonic()
    for epoch in range(start, config.epochs):
        model.train()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 100_003 + epoch)
        order = rng.permutation(len(works))
        batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        total, t0 = 0.0, time.monotonic()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        for batch in bar:
            inputs = np.stack([prepare_work(augmentation.augment(works[i], rng, ranges), spec)[0] for i in batch])
            x = torch.from_numpy(inputs).to(torch_device)
            loss = loss_fn(model(x), x)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        scheduler.step()
        history.append({"epoch": epoch + 1, "loss": total / len(works), "seconds": time.monotonic() - t0})
        log.info("epoch %d: loss %.5f, %.1f s", epoch + 1, history[-1]["loss"], history[-1]["seconds"])
        _save_atomic({"config": dataclasses.asdict(config), "preprocess": dataclasses.asdict(spec),
                      "model": model.state_dict(), "optimiser": optimiser.state_dict(),
                      "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history}, checkpoint_path)
        (run / "history.json").write_text(json.dumps(history, indent=1))
        if time_budget_s is not None and time.monotonic() - began > time_budget_s and epoch + 1 < config.epochs:
            log.warning("time budget spent after epoch %d of %d; resume with the same command", epoch + 1,
                        config.epochs)
            return None

    model.eval()
    mapper = build_mapper(config, spec)
    mapper.autoencoder.load_state_dict(model.state_dict())
    mapper = mapper.to(torch_device).eval()
    if config.pixel_stats:
        inputs = np.stack([prepare_work(work, spec)[0] for work in works])
        mapper.standardise_on(torch.from_numpy(inputs[i:i + config.batch_size]).to(torch_device)
                              for i in range(0, len(inputs), config.batch_size))
    score = Score(blur_sigma=config.blur_sigma, border=config.score_border, pixel_standardised=config.pixel_stats)
    metadata = ModelMetadata(
        preprocess=spec, score=score, arch=config.arch,
        category=dataset.category, data_fingerprint=fingerprint(dataset.train),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        package_version=__version__,
    )
    metadata = calibrate(metadata, TorchInfer(mapper, torch_device), holdout_paths, dataset.validation,
                         config.threshold_quantile)
    torch.save(mapper.cpu().state_dict(), run / "model.pt")
    (run / "metadata.json").write_text(metadata.to_json())
    (run / "holdout.json").write_text(json.dumps([str(p) for p in holdout_paths], indent=1))
    return metadata


def score_paths(paths, metadata: ModelMetadata, infer, batch_size: int = 8) -> np.ndarray:
    """Scores of image files through the edge's own pipeline with the given model."""
    scores = []
    for i in range(0, len(paths), batch_size):
        results = run_pipeline(list(paths[i:i + batch_size]), metadata, 0.0, infer)
        scores.extend(r.score for r in results)
    return np.array(scores, np.float64)


def calibrate(metadata: ModelMetadata, infer, holdout: list[Path], validation, quantile: float) -> ModelMetadata:
    """Threshold from a validation split with defects when the data has one (Youden), else a quantile of held-back goods."""
    good_val = [s.path for s in validation if not s.is_anomalous]
    bad_val = [s.path for s in validation if s.is_anomalous]
    if good_val and bad_val:
        threshold = youden_threshold(score_paths(good_val, metadata, infer), score_paths(bad_val, metadata, infer))
    else:
        threshold = quantile_threshold(score_paths(holdout, metadata, infer), quantile)
    return dataclasses.replace(metadata, threshold=threshold)


def _save_atomic(state: dict, path: Path) -> None:
    """Write next to the target and rename, so an interruption never leaves a half-written checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)
