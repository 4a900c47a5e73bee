"""The evaluation report: per-defect score table, image and pixel AUROC, ROC curve, histograms, F1.

Test images are scored three ways: as they are, and photometrically equalised (scaled, and
separately shifted, so every image has the dataset's own median gray level: a dark category stays dark).
Next to them stands a model-free baseline, the image's median brightness. When brightness alone separates
the split, the raw AUROC proves nothing and the equalised one is the honest number. Two more figures say
whether the scores come from the defects at all: the AUROC once the (dilated) defect regions are cut out
of the maps (near 0.5 when they do), and the share of defective images whose map peaks inside the region.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from insightad_edge.detector import Detector, run_pipeline
from insightad_edge.errors import DataError
from insightad_edge.imagefiles import readable
from insightad_edge.metadata import ModelMetadata
from insightad_edge.preprocess import decode

from .data import GOOD, content_digest, load_dataset, mask_files, read_mask, refuse_unreadable
from .metrics import auroc, precision_recall_f1, roc_curve

log = logging.getLogger(__name__)
CONDITIONS = ("raw", "equalised_scale", "equalised_shift")
HONEST = "equalised_scale"
PIXEL_SIZE = 256
DILATION = 0.04  # defect regions are widened by this share of the image before cutting them out


def dataset_level(paths, count: int = 64) -> float:
    """The dataset's own median gray level (of up to ``count`` of its good training images)."""
    step = max(1, len(paths) // count)
    return float(np.median([np.median(decode(p)) for p in list(paths)[::step]]))


def equalise(image: np.ndarray, mode: str, level: float) -> np.ndarray:
    """The image with its median gray level moved to ``level``, by scaling or by shifting."""
    own = float(np.median(image))
    if mode == "raw":
        return image
    if mode == "equalised_scale":
        return np.clip(image * (level / max(own, 1e-6)), 0.0, 1.0)
    if mode == "equalised_shift":
        return np.clip(image + (level - own), 0.0, 1.0)
    raise ValueError(mode)


def unseen(dataset) -> tuple[tuple, list]:
    """(the test samples, the exact copies of training or validation images among them, left out): a model's score
    on a picture it learned from says nothing of new parts (a copied good one flatters the AUROC, and a defective
    one filed among the good training images was learned as good)."""
    learned = {content_digest(path) for path in (*dataset.train, *(s.path for s in dataset.validation))}
    copies = [s for s in dataset.test if content_digest(s.path) in learned]
    return tuple(s for s in dataset.test if s not in copies), copies


def open_model(model: Path) -> tuple[ModelMetadata, object, str]:
    """An exported model file (scored by the edge itself, which refuses a file that is not one) or a training
    run folder (scored by torch)."""
    if model.is_file() or model.suffix == ".onnx":
        detector = Detector(model)
        return detector.metadata, detector.infer, f"ONNX model {model} via onnxruntime"
    from .fit import TorchInfer, load_run

    net, metadata = load_run(model)
    return metadata, TorchInfer(net), f"training run {model} via torch"


def evaluate(model: Path, data: Path, out: Path) -> dict:
    """Score the test split of DATA with MODEL and write report.md, report.json, roc.png and histograms.png to OUT."""
    metadata, infer, source = open_model(model)
    dataset = load_dataset(data)
    if not dataset.test:
        raise DataError(f"{data} has no test split (test/good, test/<defect>) to evaluate on")
    samples, copies = unseen(dataset)
    refuse_unreadable([s.path for s in samples], "test images")
    refuse_unreadable([f for s in samples if s.mask is not None for f in mask_files(s.mask)], "ground-truth masks")
    kinds = {sample.is_anomalous for sample in samples}
    if len(kinds) < 2:  # an AUROC compares the two: with one kind it is undefined, not a number to report
        raise DataError(f"{data}'s test split holds only {'defective' if kinds == {True} else 'good'} images: an evaluation "
                        "needs good ones (test/good) and defective ones (test/<defect>); `insightad-edge score` judges "
                        "a folder of one kind")
    threshold = metadata.threshold.value
    labels = np.array([s.is_anomalous for s in samples])
    scores = {c: np.zeros(len(samples)) for c in CONDITIONS}
    brightness = np.zeros(len(samples))
    level = dataset_level(dataset.train)
    pixel_labels, pixel_scores, evidence = [], [], []
    for i, sample in enumerate(samples):
        image = decode(sample.path, metadata.preprocess.channels)
        brightness[i] = float(np.median(image))
        for condition in CONDITIONS:
            with_map = condition == HONEST
            result = run_pipeline([equalise(image, condition, level)], metadata, threshold, infer, with_map=with_map,
                                  not_inspectable="report")[0]
            scores[condition][i] = np.inf if result.score is None else result.score  # no verdict is never "good"
            if with_map and result.anomaly_map is not None and (sample.mask is not None or not sample.is_anomalous):
                amap = cv2.resize(result.anomaly_map, (PIXEL_SIZE, PIXEL_SIZE), interpolation=cv2.INTER_AREA)
                mask = np.zeros_like(amap, bool)
                if sample.mask is not None:
                    mask = cv2.resize(read_mask(sample.mask).astype(np.uint8), (PIXEL_SIZE, PIXEL_SIZE),
                                      interpolation=cv2.INTER_NEAREST) > 0
                pixel_labels.append(mask.ravel())
                pixel_scores.append(amap.ravel())
                evidence.append(_defect_evidence(amap, mask, sample))
        log.info("%s: %s", sample.path, {c: round(scores[c][i], 6) for c in CONDITIONS})

    has_masks = any(s.mask is not None for s in samples)
    unmasked = sum(s.is_anomalous and s.mask is None for s in samples)  # their defect's pixels are unknown: left out
    report = {
        "model": source,
        "data": str(data),
        "threshold": {"value": threshold, "method": metadata.threshold.method,
                      "quantile": metadata.threshold.quantile},
        "honest_condition": HONEST,
        "image_auroc": {c: auroc(labels, scores[c]) for c in CONDITIONS},
        "brightness_baseline_auroc": {"raw": auroc(labels, brightness), "equalised": 0.5},
        "pixel_auroc": auroc(np.concatenate(pixel_labels), np.concatenate(pixel_scores)) if has_masks else None,
        "defects_without_mask": unmasked,
        "copies_of_training_images": [s.path.relative_to(dataset.root).as_posix() for s in copies],
        "equalised_level": level,
        "not_inspectable": {c: int(np.isinf(scores[c]).sum()) for c in CONDITIONS},
        "from_the_defects": _from_the_defects(evidence) if has_masks else None,
        "at_threshold": {c: precision_recall_f1(labels, scores[c] > threshold) for c in CONDITIONS},
        "per_defect": {c: _per_defect(samples, scores[c], labels) for c in CONDITIONS},
        "scores": [{"path": s.path.relative_to(dataset.root).as_posix(), "defect": s.defect,  # null: no verdict
                    **{c: scores[c][i] if np.isfinite(scores[c][i]) else None for c in CONDITIONS}}
                   for i, s in enumerate(samples)],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    _plot_roc(labels, scores, brightness, out / "roc.png")
    _plot_histograms(samples, scores[HONEST], threshold, out / "histograms.png")
    (out / "report.md").write_text(readable(render_markdown(report)), encoding="utf-8")  # names that are not UTF-8 too
    return report


def _defect_evidence(amap: np.ndarray, mask: np.ndarray, sample) -> tuple:
    """(anomalous, map max, map max with the dilated defect region cut out, whether the peak lies in it)."""
    if not mask.any():
        return sample.is_anomalous, float(amap.max()), float(amap.max()), None
    reach = 2 * round(DILATION * PIXEL_SIZE) + 1
    region = cv2.dilate(mask.astype(np.uint8), np.ones((reach, reach), np.uint8)) > 0
    peak = np.unravel_index(int(np.argmax(amap)), amap.shape)
    outside = amap[~region]
    return True, float(amap.max()), float(outside.max()) if outside.size else float(amap.min()), bool(region[peak])


def _from_the_defects(evidence: list[tuple]) -> dict:
    """Do the scores come from the defects? AUROC of map maxima, the same with defect regions cut out, and
    the share of defective images (with a mask) whose map peaks inside the defect region."""
    labels = np.array([e[0] for e in evidence])
    peaks = [e[3] for e in evidence if e[3] is not None]
    return {"auroc_map_max": auroc(labels, np.array([e[1] for e in evidence])),
            "auroc_defects_cut_out": auroc(labels, np.array([e[2] for e in evidence])),
            "peaks_in_defect": float(np.mean(peaks)) if peaks else None, "dilation": DILATION}


def _per_defect(samples, scores: np.ndarray, labels: np.ndarray) -> dict:
    """Per defect type: how many, the judged images' score statistics (None when none was judged), how many got no
    verdict, and the AUROC against the good images (no verdict counting as flagged)."""
    table = {}
    good = scores[~labels]
    for defect in sorted({s.defect for s in samples}, key=lambda d: (d != GOOD, d)):
        chosen = np.array([s.defect == defect for s in samples])
        values = scores[chosen]
        judged = values[np.isfinite(values)]
        spread = ({"mean": float(judged.mean()), "std": float(judged.std()), "min": float(judged.min()),
                   "max": float(judged.max())} if judged.size else dict.fromkeys(("mean", "std", "min", "max")))
        table[defect] = {"n": int(chosen.sum()), **spread, "not_inspectable": int(values.size - judged.size),
                         "auroc_vs_good": None if defect == GOOD else
                         auroc(np.r_[np.zeros(len(good)), np.ones(len(values))], np.r_[good, values])}
    return table


def _plot_roc(labels, scores: dict, brightness, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for condition, values in scores.items():
        fpr, tpr, _ = roc_curve(labels, values)
        ax.plot(fpr, tpr, label=f"model, {condition} (AUROC {auroc(labels, values):.3f})",
                lw=2.5 if condition == HONEST else 1.2)
    fpr, tpr, _ = roc_curve(labels, brightness)
    ax.plot(fpr, tpr, "k:", label=f"median brightness only, raw (AUROC {auroc(labels, brightness):.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set(xlabel="false positive rate (good parts flagged)", ylabel="true positive rate (defects caught)",
           title="Image-level ROC")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_histograms(samples, scores: np.ndarray, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    defects = sorted({s.defect for s in samples}, key=lambda d: (d != GOOD, d))
    fig, axes = plt.subplots(len(defects), 1, figsize=(6, 1.3 * len(defects) + 0.8), sharex=True)
    judged = scores[np.isfinite(scores)]  # the frames that got no verdict are counted in the report, not drawn
    bins = np.linspace(judged.min(), judged.max(), 40) if judged.size else 40
    for ax, defect in zip(np.atleast_1d(axes), defects):
        values = scores[[s.defect == defect for s in samples]]
        ax.hist(values[np.isfinite(values)], bins=bins, color="tab:green" if defect == GOOD else "tab:red", alpha=0.8)
        ax.axvline(threshold, color="k", ls="--", lw=1)
        ax.set_ylabel(readable(defect), rotation=0, ha="right", fontsize=8)  # a folder's name, UTF-8 or not
    np.atleast_1d(axes)[-1].set_xlabel(f"score ({HONEST} inputs); dashed line: threshold {threshold:.4g}")
    fig.suptitle("Score per defect type")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_markdown(report: dict) -> str:
    a, b = report["image_auroc"], report["brightness_baseline_auroc"]
    lines = [
        "# Evaluation report", "",
        f"Model: {report['model']}  ", f"Data: `{report['data']}`  ",
        f"Threshold: {report['threshold']['value']:.6g} ({report['threshold']['method']}"
        + (f", quantile {report['threshold']['quantile']}" if report['threshold']['quantile'] is not None else "")
        + ", chosen without test labels)", "",
        "## Image-level AUROC", "",
        "| input | model | median-brightness baseline |", "|---|---:|---:|",
        f"| raw | {a['raw']:.3f} | {b['raw']:.3f} |",
        (f"| equalised (scaled to the dataset's median, {report['equalised_level'] * 255:.0f}) — **the honest number** "
         f"| **{a['equalised_scale']:.3f}** | {b['equalised']:.3f} |"),
        f"| equalised (shifted to {report['equalised_level'] * 255:.0f}) | {a['equalised_shift']:.3f} | {b['equalised']:.3f} |",
        "",
        ("Brightness alone can separate a test split whose good and defective images were lit differently; "
         "equalised inputs remove that cue, so only the equalised AUROC measures defect detection."),
        "",
    ]
    copies = report.get("copies_of_training_images")
    if copies:
        lines += [f"**{len(copies)} test images are exact copies of training or validation images and are left out** "
                  "(a score on a picture the model learned from says nothing of new parts): "
                  + ", ".join(f"`{c}`" for c in copies[:10]) + (" ..." if len(copies) > 10 else ""), ""]
    if report["pixel_auroc"] is not None:
        left_out = report.get("defects_without_mask")
        lines += [f"Pixel-level AUROC against the ground-truth masks (equalised inputs): **{report['pixel_auroc']:.3f}**"
                  + (f" ({left_out} defective images without a mask left out)" if left_out else ""), ""]
    if report.get("from_the_defects"):
        f = report["from_the_defects"]
        lines += ["## Do the scores come from the defects?", "",
                  (f"Image AUROC from the maps' maxima {f['auroc_map_max']:.3f}; with the defect regions (dilated by "
                   f"{f['dilation']:.0%} of the image) cut out of the maps **{f['auroc_defects_cut_out']:.3f}** (near 0.5 "
                   "when the scores come from the defects); map peaks inside the defect region on "
                   f"**{f['peaks_in_defect']:.0%}** of the defective images."), ""]
    lines += ["## At the calibrated threshold", "", "| input | precision | recall | F1 |", "|---|---:|---:|---:|"]
    for condition, m in report["at_threshold"].items():
        lines.append(f"| {condition} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |")
    for condition in (HONEST, "raw"):
        lines += ["", f"## Score per defect type ({condition} inputs)", "",
                  "| defect | n | no verdict | mean | std | min | max | AUROC vs good |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for defect, r in report["per_defect"][condition].items():
            auc = "" if r["auroc_vs_good"] is None else f"{r['auroc_vs_good']:.3f}"
            spread = " | ".join("-" if r[k] is None else f"{r[k]:.5f}" for k in ("mean", "std", "min", "max"))
            lines.append(f"| {defect} | {r['n']} | {r['not_inspectable']} | {spread} | {auc} |")
    lines += ["", "![ROC curve](roc.png)", "", "![Score histograms](histograms.png)", ""]
    return "\n".join(lines)
