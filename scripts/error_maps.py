"""Rescore a trained autoencoder run with other error maps: synthetic validation and the real equalised test.

    python scripts/error_maps.py RUN [--maps squared,absolute,ssim1.5,ssim3,gradient,squared+ssim1.5,band3,shift3]

RUN is a finished `fit --arch bottleneck` (or seed) folder. Each map is computed from the run's own
reconstructions, pre-blurred and standardised per pixel on the training images as `fit` does the squared
error; "a+b" averages two standardised maps; "bandK" and "shiftK" forgive the reconstruction a shift within
K x K pixels (the distance to its range there, or the least error over its shifts). Prints, per map, the
synthetic-defect AUROC on the held-back images, the test split's image and pixel AUROC (equalised to the
dataset's median level) and the F1 at the 99th percentile of the held-back scores. Writes no image.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from insightad_edge.detector import run_pipeline
from insightad_edge.preprocess import decode, prepare_work, to_work
from insightad_train.anomalies import synthetic_validation
from insightad_train.config import saved_config
from insightad_train.data import load_dataset, read_mask
from insightad_train.evaluate import HONEST, PIXEL_SIZE, dataset_level, equalise
from insightad_train.fit import TorchInfer, load_run, split_holdout
from insightad_train.metrics import auroc, precision_recall_f1
from insightad_train.model import AnomalyMapper, gaussian_kernel


def blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = gaussian_kernel(sigma)
    pad = kernel.shape[-1] // 2
    return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect"), kernel)


def ssim_error(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x, sigma), blur(y, sigma)
    vx, vy, cov = blur(x * x, sigma) - mx * mx, blur(y * y, sigma) - my * my, blur(x * y, sigma) - mx * my
    return 1 - ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def gradients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.pad(t[..., :, 1:] - t[..., :, :-1], (0, 1, 0, 0)), F.pad(t[..., 1:, :] - t[..., :-1, :], (0, 0, 0, 1))


def error(kind: str, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    if kind == "squared":
        e = (x - r) ** 2
    elif kind == "absolute":
        e = (x - r).abs()
    elif kind.startswith("ssim"):
        e = ssim_error(x, r, float(kind[4:]))
    elif kind.startswith("band"):  # distance to the reconstruction's range in a k x k window: a phase shift is no error
        k = int(kind[4:])
        high = F.max_pool2d(r, k, stride=1, padding=k // 2)
        low = -F.max_pool2d(-r, k, stride=1, padding=k // 2)
        e = F.relu(x - high) ** 2 + F.relu(low - x) ** 2
    elif kind.startswith("shift"):  # the least squared error over shifts of the reconstruction within k x k
        k = int(kind[5:])
        padded = F.pad(r, (k // 2,) * 4, mode="replicate")
        h, w = x.shape[-2:]
        e = torch.stack([(x - padded[..., i:i + h, j:j + w]) ** 2 for i in range(k) for j in range(k)]).amin(dim=0)
    elif kind == "gradient":
        (gx, gy), (hx, hy) = gradients(x), gradients(r)
        e = (gx - hx) ** 2 + (gy - hy) ** 2
    else:
        raise ValueError(kind)
    return e.mean(dim=1, keepdim=True)


class ErrorMap(AnomalyMapper):
    """The run's autoencoder with another error per pixel, then fit's own pre-blur and standardisation."""

    def __init__(self, autoencoder, input_size, pre_sigma: float, kind: str):
        super().__init__(autoencoder, input_size, pre_sigma)
        self.kind = kind

    def raw_error(self, x):
        reconstruction = self.autoencoder(x)
        return error(self.kind, x, reconstruction), reconstruction


class Mean(torch.nn.Module):
    """The mean of several standardised maps."""

    def __init__(self, maps: list[ErrorMap]):
        super().__init__()
        self.maps = torch.nn.ModuleList(maps)

    def forward(self, x):
        return sum(m(x)[0] for m in self.maps) / len(self.maps), x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--maps", default="squared,absolute,ssim1.5,ssim3,gradient,squared+ssim1.5,squared+gradient")
    args = parser.parse_args()
    mapper, metadata = load_run(args.run)
    config = saved_config(json.loads((args.run / "config.json").read_text()))
    dataset = load_dataset(Path(config.data))
    train, holdout = split_holdout(dataset.train, config.holdout, config.seed)
    spec = metadata.preprocess
    inputs = np.stack([prepare_work(to_work(decode(p, spec.channels), spec), spec)[0] for p in train])
    level = dataset_level(dataset.train)
    labels = np.array([s.is_anomalous for s in dataset.test])
    tests = [equalise(decode(s.path, spec.channels), HONEST, level) for s in dataset.test]
    masks = [np.zeros((PIXEL_SIZE, PIXEL_SIZE), bool) if s.mask is None else cv2.resize(
        read_mask(s.mask).astype(np.uint8), (PIXEL_SIZE, PIXEL_SIZE), interpolation=cv2.INTER_NEAREST) > 0
        for s in dataset.test]
    for name in args.maps.split(","):
        maps = [ErrorMap(mapper.autoencoder, spec.input_size, config.error_blur_sigma, kind) for kind in name.split("+")]
        for m in maps:
            m.eval().standardise_on(torch.from_numpy(inputs[i:i + 16]) for i in range(0, len(inputs), 16))
        infer = TorchInfer(Mean(maps))
        held = [r.score for r in run_pipeline([decode(p, spec.channels) for p in holdout], metadata, 0.0, infer)]
        threshold = float(np.quantile(held, config.threshold_quantile))
        rescored = dataclasses.replace(metadata, threshold=dataclasses.replace(metadata.threshold, value=threshold))
        synthetic = synthetic_validation(rescored, infer, holdout, config.seed)
        scores, pixel_scores = [], []
        for i in range(0, len(tests), 8):
            for r in run_pipeline(tests[i:i + 8], rescored, threshold, infer, with_map=True, not_inspectable="report"):
                scores.append(np.inf if r.score is None else r.score)
                pixel_scores.append(cv2.resize(r.anomaly_map, (PIXEL_SIZE, PIXEL_SIZE), interpolation=cv2.INTER_AREA))
        scores = np.array(scores)
        pixel = auroc(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in pixel_scores]))
        print(f"{name:<18} synthetic {synthetic['auroc']:.3f}  real {auroc(labels, scores):.3f}  pixel {pixel:.3f}  "
              f"F1 {precision_recall_f1(labels, scores > threshold)['f1']:.3f}", flush=True)


if __name__ == "__main__":
    main()
