"""`insightad-train`: fit, evaluate and export models, and write augmented copies of good images.

Needs the [train] extra (torch); the heavy imports happen inside each command so --help stays fast.
Every option's default and choices come from ``FitConfig`` and the modules that define them.
"""
from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from pathlib import Path

import click

from insightad_edge import __version__
from insightad_edge.config import install_hint
from insightad_edge.console import Commands, Number, quiet_opencv, writable_file, writable_folder
from insightad_edge.errors import EXIT_CODES_HELP, EXIT_FAILED, EXIT_UNUSABLE, EXIT_USAGE, InsightadError
from insightad_edge.metadata import ALIGN_METHODS, PHOTOMETRIC_METHODS

from .config import ARCHS, AUGMENT_PRESETS, CANDIDATES, COLOURS, DEVICES, FIT_DEFAULTS, SEARCH_MINUTES

DIR = click.Path(file_okay=False, path_type=Path)
EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        click.echo(f"Error: training needs the train extra: {install_hint('train')}", err=True)
        sys.exit(EXIT_USAGE)


def _fail(exc: Exception) -> None:
    """One line for a known failure, with the exit code that fits it: usage 2, model or data unusable 3."""
    click.echo(f"Error: {exc}", err=True)
    sys.exit(EXIT_USAGE if isinstance(exc, ValueError) else EXIT_UNUSABLE)


def option(name: str, **kwargs):
    """A `fit` option whose default is FitConfig's; a true/false field becomes an --x/--no-x flag."""
    flag = "--" + name.replace("_", "-")
    if isinstance(FIT_DEFAULTS[name], bool):
        flag = f"{flag}/--no-{flag[2:]}"
    return click.option(flag, name, default=FIT_DEFAULTS[name], show_default=True, **kwargs)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="insightad-train")
@click.option("-v", "--verbose", is_flag=True, help="Log each epoch and image to stderr.")
def main(verbose: bool) -> None:
    """Train, evaluate and export insightad models."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--data", type=EXISTING_DIR, required=True, help="MVTec-layout category folder, or a folder of good images.")
@click.option("--out", type=DIR, required=True, help="Run folder: config, checkpoints, model, metadata.")
@option("arch", type=click.Choice(("auto",) + ARCHS),
        help=f"auto: fit the candidates ({', '.join(CANDIDATES)}) fast enough for a line and keep the best on "
             "synthetic defects.")
@option("width", type=Number(0.125, 4.0),
        help="Channel multiplier of the bottleneck model: 1.0 is conv 32/64/128/64.")
@option("place", type=Number(min=0),
        help="patchknn: how much a patch's place in the aligned part counts against its look (0: not at all).")
@option("context", type=Number(min=0),
        help="patchknn: how much the distance of a patch's surroundings (twice its extent) adds to its own (0: none).")
@option("epochs", type=click.IntRange(min=1), help="More epochs on an existing run folder continue it.")
@option("image_size", type=click.IntRange(min=32),
        help="Input pixels = size x size; aligned parts get the same area with their own aspect.")
@option("batch_size", type=click.IntRange(min=1))
@option("learning_rate", type=Number(min=0, min_open=True))
@option("lr_decay", type=Number(0, 1, min_open=True), help="Learning rate factor per epoch.")
@option("alpha", type=Number(0, 1), help="SSIM weight in the loss.")
@option("seed", type=click.IntRange(min=0))
@option("augment", type=click.Choice(AUGMENT_PRESETS),
        help="light: small pose jitter, no mirror; seed: the original ±40° rotation, ±20% shift/shear/zoom, flips.")
@option("align", type=click.Choice(("auto",) + ALIGN_METHODS), help="Pose normalisation; auto decides from the images.")
@option("photometric", type=click.Choice(PHOTOMETRIC_METHODS), help="Brightness normalisation carried in the model.")
@option("colour", type=click.Choice(COLOURS),
        help="gray or colour (BGR) input; auto: colour when the images' colour carries what gray loses.")
@option("holdout", type=Number(0, 0.5, min_open=True),
        help="Share of good images held back to calibrate the threshold (at least 10 images).")
@option("threshold_quantile", type=Number(0.5, 1.0))
@option("pixel_stats", help="Standardise the error per pixel by its spread on the good training images.")
@option("error_blur_sigma", type=Number(min=0), help="Gaussian blur of the squared error inside the graph.")
@option("blur_sigma", type=Number(min=0), help="Gaussian blur (input pixels) of the map before its max.")
@option("score_border", type=click.IntRange(min=0), help="Input pixels at the map's edge left out of the score.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True, help="auto: CUDA when present.")
@click.option("--time-budget", type=Number(min=0),
              help=f"Stop after the epoch that passes this many minutes; --arch auto (within {SEARCH_MINUTES:g} minutes "
                   "unless told) starts no candidate that would outlast it.")
def fit(data: Path, out: Path, device: str, time_budget: float | None, **options) -> None:
    """Train an autoencoder on the good images in DATA; resumes or extends the run in OUT."""
    _require_torch()
    quiet_opencv()
    from .config import FitConfig
    from .fit import fit as run_fit

    config = FitConfig(data=str(data.resolve()), **options)
    writable_folder(out, "--out")
    try:
        metadata = run_fit(config, out, device=device,
                           time_budget_s=None if time_budget is None else time_budget * 60.0)
    except (ValueError, InsightadError) as exc:
        _fail(exc)
    if metadata is None:
        click.echo(f"stopped at the time budget; run the same command again to resume {out}", err=True)
        sys.exit(EXIT_FAILED)
    for key, why in json.loads((out / "choices.json").read_text()).items():
        click.echo(f"chose {key}: {why}", err=True)
    if (out / "search.json").is_file() and config.arch == "auto":
        from .search import table

        for line in table(out):
            click.echo(line, err=True)
    validation = json.loads((out / "validation.json").read_text())
    click.echo(f"synthetic defects on the {validation['n_good']} held-back images: AUROC {validation['auroc']:.3f} "
               f"({', '.join(f'{k} {v:.2f}' for k, v in validation['by_kind'].items())}); the threshold catches "
               f"{validation['caught_at_threshold']:.0%}", err=True)
    p, t = metadata.preprocess, metadata.threshold
    click.echo(f"trained {out}: input {p.input_size[1]}x{p.input_size[0]}, pose {p.align}, threshold {t.value:.6g} "
               f"({t.method} on {t.n_good} held-back good images)")
    for warning in metadata.warnings:
        click.echo(f"warning: {warning}", err=True)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--data", type=EXISTING_DIR, required=True, help="MVTec-layout folder with a test split.")
@click.option("--out", type=DIR, help="Report folder [default: MODEL/report, or next to the .onnx].")
def evaluate(model: Path, data: Path, out: Path | None) -> None:
    """Score the test split with MODEL (a run folder or an exported .onnx) and write the report."""
    _require_torch()
    quiet_opencv()
    from .evaluate import HONEST
    from .evaluate import evaluate as run_evaluate

    out = out or (model / "report" if model.is_dir() else model.with_name(model.stem + "_report"))
    if lies_among(out, data, ("train", "test", "validation")):
        raise click.BadParameter(f"{out} lies among {data}'s images: the report's plots would be taken for parts by "
                                 "the next fit or evaluate; write it elsewhere", param_hint="--out")
    writable_folder(out, "--out")
    try:
        report = run_evaluate(model, data, out)
    except (ValueError, InsightadError) as exc:
        _fail(exc)
    copies = report["copies_of_training_images"]
    if copies:
        click.echo(f"warning: {len(copies)} test images are exact copies of training or validation images, left out "
                   f"(the first: {copies[0]})", err=True)
    a = report["image_auroc"]
    pixel = report["pixel_auroc"]
    click.echo(f"image AUROC on equalised inputs (the honest number) {a[HONEST]:.3f}; "
               f"pixel AUROC {'-' if pixel is None else f'{pixel:.3f}'}; F1 {report['at_threshold'][HONEST]['f1']:.3f} "
               f"(raw inputs {a['raw']:.3f}, brightness alone {report['brightness_baseline_auroc']['raw']:.3f})")
    if report["from_the_defects"]:
        f = report["from_the_defects"]
        click.echo(f"from the defects? AUROC with the defect regions cut out {f['auroc_defects_cut_out']:.3f} "
                   f"(0.5 if so); map peaks inside the defect on {f['peaks_in_defect']:.0%} of defective images")
    click.echo(f"report: {out / 'report.md'}")


def lies_among(out: Path, data: Path, splits: tuple[str, ...]) -> bool:
    """Whether the folder OUT is, or lies in, one of DATA's SPLITS: what a command writes there is taken for parts."""
    return any(out.resolve().is_relative_to((data / split).resolve()) for split in splits)


def writable_model(out: Path) -> None:
    """Refuse (exit 2) an --out that does not name a model file (.onnx): a mistyped path (a training image, the
    model's JSON beside it) was written over by the model without a word."""
    writable_file(out, "--out")
    if out.suffix.lower() != ".onnx":
        raise click.BadParameter(f"{out} does not end in .onnx, as a model file does: nothing else is written over "
                                 "with a model", param_hint="--out")


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("run", type=EXISTING_DIR)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Where to write MODEL.onnx.")
@click.option("--parity-images", type=EXISTING_DIR, help="Images for the parity check [default: the run's held-back goods].")
def export(run: Path, out: Path, parity_images: Path | None) -> None:
    """Export RUN to one ONNX file with its metadata, and check it against torch."""
    _require_torch()
    quiet_opencv()
    from .data import list_images
    from .export import export as run_export

    writable_model(out)
    try:
        report = run_export(run, out, list_images(parity_images)[:8] if parity_images else None)
    except (ValueError, InsightadError) as exc:
        _fail(exc)
    click.echo(report.summary())


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", type=EXISTING_DIR, required=True, help="The good images the model was trained on.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Where to write the new model.")
@option("holdout", type=Number(0, 0.5, min_open=True), help="As the model was trained with.")
@option("seed", type=click.IntRange(min=0), help="As the model was trained with.")
def upgrade(model: Path, data: Path, out: Path, holdout: float, seed: int) -> None:
    """Rewrite a schema-1 MODEL as schema 2: same weights and threshold, plus the frame size, inspection limits
    and drift reference measured on DATA; its scores on the training frames must stay the same. A schema-2 MODEL
    gets the frame statistics it lacks (another part in view), measured on DATA; all else stays."""
    _require_torch()
    quiet_opencv()
    from .export import upgrade as run_upgrade

    writable_model(out)
    try:
        click.echo(run_upgrade(model, data, out, holdout, seed))
    except (ValueError, InsightadError) as exc:
        _fail(exc)


@main.command()
@click.option("--data", type=EXISTING_DIR, required=True, help="MVTec-layout folder (train/good) or a folder of images.")
@click.option("--out", type=DIR, required=True)
@click.option("--copies", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--preset", type=click.Choice(AUGMENT_PRESETS[:2]), default="seed", show_default=True)
@option("seed", type=click.IntRange(min=0))
def augment(data: Path, out: Path, copies: int, preset: str, seed: int) -> None:
    """Write COPIES augmented versions of every good image to OUT (reproducible for a given seed)."""
    import numpy as np

    from insightad_edge.imagefiles import readable, write_image
    from insightad_edge.preprocess import load

    from .augment import PRESETS
    from .augment import augment as transform
    from .data import load_dataset, refuse_unreadable

    quiet_opencv()
    if lies_among(out, data, ("test", "validation")):
        raise click.BadParameter(f"{out} lies among {data}'s test images: evaluate would score copies of what the "
                                 "model trained on as parts it never saw; choose a folder outside it", param_hint="--out")
    writable_folder(out, "--out")
    try:
        images = load_dataset(data).train
        refuse_unreadable(images, "good images")
    except InsightadError as exc:
        _fail(exc)
    if out.resolve() == images[0].parent.resolve():
        raise click.BadParameter(f"{out} holds the good images: the next fit would take the copies for good parts, "
                                 "hold some back and calibrate the threshold on copies of what it trained on (fit "
                                 "augments as it trains anyway); choose a folder outside it", param_hint="--out")
    stems = Counter(path.stem for path in images)  # a.png and a.jpg keep their whole names: a.png_aug0.png
    with click.progressbar(images, label="augmenting", file=sys.stderr) as bar:
        for index, path in enumerate(bar):
            try:
                image = load(path)
            except InsightadError as exc:
                _fail(exc)
            name = path.stem if stems[path.stem] == 1 else path.name
            for copy in range(copies):
                rng = np.random.default_rng([seed, index, copy])
                target = out / f"{name}_aug{copy}.png"
                try:
                    write_image(target, transform(image, rng, PRESETS[preset]))
                except OSError as exc:
                    click.echo(readable(f"Error: could not write {target}: {exc.strerror or exc}"), err=True)
                    sys.exit(EXIT_FAILED)
    click.echo(f"wrote {len(images) * copies} images to {out}")


if __name__ == "__main__":
    main()
