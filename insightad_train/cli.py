"""`insightad-train`: fit, evaluate and export models, and write augmented copies of good images.

Needs the [train] extra (torch); the heavy imports happen inside each command so --help stays fast.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from insightad_edge import __version__

DIR = click.Path(file_okay=False, path_type=Path)
EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise click.ClickException("training needs the train extra: pip install 'insightad[train]'") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="insightad-train")
@click.option("-v", "--verbose", is_flag=True, help="Log each epoch and image to stderr.")
def main(verbose: bool) -> None:
    """Train, evaluate and export insightad models."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@main.command()
@click.option("--data", type=EXISTING_DIR, required=True, help="MVTec-layout category folder, or a folder of good images.")
@click.option("--out", type=DIR, required=True, help="Run folder: config, checkpoints, model, metadata.")
@click.option("--arch", type=click.Choice(["seed", "bottleneck"]), default="bottleneck", show_default=True)
@click.option("--width", type=click.FloatRange(0.125, 4.0), default=0.5, show_default=True,
              help="Channel multiplier of the bottleneck model: 1.0 is conv 32/64/128/64; 0.5 runs twice as fast "
                   "and detects as well on screws.")
@click.option("--epochs", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--image-size", type=click.IntRange(min=32), default=256, show_default=True,
              help="Input pixels = size x size; aligned parts get the same area with their own aspect.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.84, show_default=True, help="SSIM weight in the loss.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--augment", type=click.Choice(["light", "seed", "none"]), default="light", show_default=True,
              help="light: small pose jitter, no mirror; seed: the original ±40° rotation, ±20% shift/shear/zoom, flips.")
@click.option("--align", type=click.Choice(["auto", "none", "center", "center_rotate"]), default="auto",
              show_default=True, help="Pose normalisation; auto decides from the training images.")
@click.option("--photometric", type=click.Choice(["median_scale", "none"]), default="median_scale", show_default=True,
              help="Brightness normalisation carried in the model.")
@click.option("--holdout", type=click.FloatRange(0, 0.5), default=0.1, show_default=True,
              help="Share of good training images held back to calibrate the threshold.")
@click.option("--threshold-quantile", type=click.FloatRange(0.5, 1.0), default=0.99, show_default=True)
@click.option("--pixel-stats/--no-pixel-stats", default=True, show_default=True,
              help="Standardise the error per pixel by its spread on the good training images.")
@click.option("--blur-sigma", type=click.FloatRange(min=0), default=4.0, show_default=True,
              help="Gaussian blur (input pixels) of the anomaly map before its max is taken.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
@click.option("--time-budget", type=click.FloatRange(min=0), help="Stop after the epoch that passes this many minutes.")
def fit(data: Path, out: Path, device: str, time_budget: float | None, **options) -> None:
    """Train an autoencoder on the good images in DATA; resumes if OUT holds an unfinished run."""
    _require_torch()
    from .fit import FitConfig, fit as run_fit

    config = FitConfig(data=str(data.resolve()), **options)
    try:
        metadata = run_fit(config, out, device=device,
                           time_budget_s=None if time_budget is None else time_budget * 60.0)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    if metadata is None:
        click.echo(f"stopped at the time budget; run the same command again to resume {out}", err=True)
        sys.exit(1)
    click.echo(f"trained {out}: input {metadata.preprocess.input_size[1]}x{metadata.preprocess.input_size[0]}, "
               f"pose {metadata.preprocess.align}, threshold {metadata.threshold.value:.6g}")


@main.command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--data", type=EXISTING_DIR, required=True, help="MVTec-layout folder with a test split.")
@click.option("--out", type=DIR, help="Report folder [default: MODEL/report, or next to the .onnx].")
def evaluate(model: Path, data: Path, out: Path | None) -> None:
    """Score the test split with MODEL (a run folder or an exported .onnx) and write the report."""
    _require_torch()
    from .evaluate import HONEST, evaluate as run_evaluate

    out = out or (model / "report" if model.is_dir() else model.with_name(model.stem + "_report"))
    try:
        report = run_evaluate(model, data, out)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    a = report["image_auroc"]
    pixel = report["pixel_auroc"]
    click.echo(f"image AUROC raw {a['raw']:.3f}, equalised {a[HONEST]:.3f} (honest), shifted {a['equalised_shift']:.3f}; "
               f"brightness baseline {report['brightness_baseline_auroc']['raw']:.3f}; "
               f"pixel AUROC {'-' if pixel is None else f'{pixel:.3f}'}; F1 {report['at_threshold'][HONEST]['f1']:.3f}")
    click.echo(f"report: {out / 'report.md'}")


@main.command()
@click.argument("run", type=EXISTING_DIR)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Where to write MODEL.onnx.")
@click.option("--parity-images", type=EXISTING_DIR, help="Images for the parity check [default: the run's held-back goods].")
def export(run: Path, out: Path, parity_images: Path | None) -> None:
    """Export RUN to one ONNX file with its metadata, and check it against torch."""
    _require_torch()
    from .data import list_images
    from .export import export as run_export

    try:
        report = run_export(run, out, list_images(parity_images)[:8] if parity_images else None)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())


@main.command()
@click.option("--data", type=EXISTING_DIR, required=True, help="MVTec-layout folder (train/good) or a folder of images.")
@click.option("--out", type=DIR, required=True)
@click.option("--copies", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--preset", type=click.Choice(["seed", "light"]), default="seed", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def augment(data: Path, out: Path, copies: int, preset: str, seed: int) -> None:
    """Write COPIES augmented versions of every good image to OUT (reproducible for a given seed)."""
    import cv2
    import numpy as np

    from .augment import PRESETS, augment as transform
    from .data import load_dataset

    out.mkdir(parents=True, exist_ok=True)
    images = load_dataset(data).train
    with click.progressbar(images, label="augmenting", file=sys.stderr) as bar:
        for index, path in enumerate(bar):
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise click.ClickException(f"{path} is not a readable image")
            for copy in range(copies):
                rng = np.random.default_rng([seed, index, copy])
                cv2.imwrite(str(out / f"{path.stem}_aug{copy}.png"), transform(image, rng, PRESETS[preset]))
    click.echo(f"wrote {len(images) * copies} images to {out}")


if __name__ == "__main__":
    main()
