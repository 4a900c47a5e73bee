"""What decides a training run, defined once: `FitConfig`, its defaults and the names of its choices.

Light on purpose (no torch): the `fit` command's options are generated from it, so `--help` stays fast.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

ARCHS = ("seed", "bottleneck", "patchknn")
CANDIDATES = ("patchknn", "bottleneck", "seed")  # what --arch auto tries, fast first: a spent budget leaves a model
UNALIGNED = "patchknn"  # tried on the whole frame too when the parts were aligned
SEARCH_MINUTES = 30.0   # --arch auto starts no candidate whose training would end after this, unless told otherwise
AUGMENT_PRESETS = ("light", "seed", "none")
COLOURS = ("auto", "gray", "colour")
DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when torch has one, else the CPU
EXTENDABLE = ("epochs",)  # a finished or interrupted run may be continued with more of these


@dataclass(frozen=True)
class FitConfig:
    """Everything that decides a training run; written to RUN/config.json and checked on resume.

    These defaults are the only ones: the `fit` command's options are generated from them.
    """

    data: str
    arch: str = "auto"
    width: float = 0.5
    place: float = 1.0
    context: float = 0.5
    image_size: int = 256
    epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 1e-3
    lr_decay: float = 0.97
    alpha: float = 0.84
    seed: int = 0
    augment: str = "light"
    align: str = "auto"
    photometric: str = "median_scale"
    colour: str = "auto"
    holdout: float = 0.1
    threshold_quantile: float = 0.99
    pixel_stats: bool = True
    error_blur_sigma: float = 2.0
    blur_sigma: float = 4.0
    score_border: int = 0


FIT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(FitConfig) if f.default is not dataclasses.MISSING}
SAVED_BEFORE = {"context": 0.0}  # fields newer than some saved runs, at the value that does what those runs did


def saved_config(saved: dict) -> FitConfig:
    """A run's FitConfig as saved in its config.json or checkpoint, fields it predates filled as it ran."""
    return FitConfig(**{**SAVED_BEFORE, **saved})
