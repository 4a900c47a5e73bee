"""Real-data check of the "never silently wrong" rules: frames of other shapes and frames without a part.

    python scripts/check_frames.py DATA [--model exported/screw.onnx] [--compare OLD.onnx]

For every test image of an MVTec-layout DATA folder (photometrically equalised, so brightness tells nothing):
the original, padded to 4:3 and 16:9, padded to 4:3 and resized to 640x480, and cut to 1024x700 around the part.
Prints, per model and shape, how many good images are flagged or not inspectable, how many defective ones are
caught, and the image AUROC over the inspectable ones; then what the check says on background-only frames;
then frames shrunk below the model's working size (a preview stream, a thumbnail) or blurred (a lens out of
focus), and frames of two parts side by side (a defective one beside a good one: a double feed): what the model
would say of them without the checks, and how many the checks refuse. Writes no image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from insightad_edge import Detector, preprocess, scoring
from insightad_edge.preprocess import decode
from insightad_train.data import load_dataset
from insightad_train.evaluate import HONEST, dataset_level, equalise
from insightad_train.metrics import auroc


def pad_to(image: np.ndarray, aspect: float) -> np.ndarray:
    """Wider, as a camera of another aspect would see the same fixture: background-coloured sides.

    (Mirroring the frame's edges instead also mirrors any screw lying near them: a second part in view.)
    """
    height, width = image.shape[:2]
    extra = max(0, round(height * aspect) - width)
    return cv2.copyMakeBorder(image, 0, 0, extra // 2, extra - extra // 2, cv2.BORDER_CONSTANT,
                              value=float(np.median(image)))


def shapes(image: np.ndarray) -> dict:
    ys = np.nonzero((image < np.median(image) * 0.7).any(axis=1))[0]
    centre = int(np.median(ys)) if len(ys) else image.shape[0] // 2
    top = int(np.clip(centre - 350, 0, image.shape[0] - 700))
    return {"original": image, "padded 4:3": pad_to(image, 4 / 3), "padded 16:9": pad_to(image, 16 / 9),
            "4:3 resized to 640x480": cv2.resize(pad_to(image, 4 / 3), (640, 480), interpolation=cv2.INTER_AREA),
            "cut to 1024x700": image[top:top + 700]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--compare", type=Path, help="Another model (e.g. the schema-1 one) judged on the same frames.")
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    samples, level = dataset.test, dataset_level(dataset.train)
    models = {"model": Detector(args.model)} | ({"compare": Detector(args.compare)} if args.compare else {})
    labels = np.array([s.is_anomalous for s in samples])
    rows = {}
    for sample in samples:
        for shape, frame in shapes(equalise(decode(sample.path), HONEST, level)).items():
            for name, detector in models.items():
                rows.setdefault((name, shape), []).append(detector(frame, not_inspectable="report"))
    print("| model | frames | good flagged | good not inspectable | defects caught | defects not inspectable "
          "| image AUROC (inspectable) |\n|---|---|---:|---:|---:|---:|---:|")
    for (name, shape), results in rows.items():
        status = np.array([r.status for r in results])
        judged = status != "not_inspectable"
        scores = np.array([r.score if r.score is not None else np.nan for r in results])
        print(f"| {models[name].path.name} (schema {models[name].metadata.schema_version}) | {shape} "
              f"| {int((status[~labels] == 'defect').sum())} / {int((~labels).sum())} "
              f"| {int((~judged[~labels]).sum())} | {int((status[labels] == 'defect').sum())} / {int(labels.sum())} "
              f"| {int((~judged[labels]).sum())} | {auroc(labels[judged], scores[judged]):.3f} |")
        for r, s in zip(results, samples):
            if r.status == "not_inspectable" and shape == "original":
                print(f"|   | not inspectable: {s.path.relative_to(args.data)}: {r.reason} | | | | | |")
    detector = models["model"]
    image = decode(samples[0].path)
    backgrounds = {"left quarter of a frame, stretched": cv2.resize(image[:, :256], (1024, 1024)),
                   "top-left corner, stretched": cv2.resize(image[:300, :300], (1024, 1024)),
                   "background, noise only": np.clip(np.median(image) + np.random.default_rng(0).normal(
                       0, 0.02, image.shape), 0, 1).astype(np.float32)}
    for name, frame in backgrounds.items():
        result = detector(frame, not_inspectable="report")
        print(f"{name}: {result.status} ({result.reason or result.score})")
    degraded_frames(detector, samples, level)
    side_by_side(detector, samples, level)


def unchecked_score(detector: Detector, frame: np.ndarray) -> float:
    """The score the model gives FRAME when nobody asks whether it can be judged."""
    meta = detector.metadata
    prepared = preprocess.prepare(frame, meta.preprocess, meta.inspection)
    maps = scoring.smooth_maps(detector.infer(prepared.input[None]), meta.score)
    return float(scoring.image_scores(maps, meta.score)[0])


def degraded_frames(detector: Detector, samples, level: float) -> None:
    """Frames shrunk below the working size (short side the working size over 1 to 3) or blurred (a lens out of
    focus, sigma 2 to 8 pixels): judged unchecked, and checked."""
    labels = np.array([s.is_anomalous for s in samples])
    frames = [equalise(decode(s.path), HONEST, level) for s in samples]

    def shrunk(enlarged):
        def degrade(frame):
            scale = detector.metadata.preprocess.work_size / enlarged / min(frame.shape[:2])
            return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return degrade

    def blurred(sigma):
        return lambda frame: cv2.GaussianBlur(frame, (0, 0), sigma)

    degradations = {f"enlarged {k:g} times to the working size": shrunk(k) for k in (1.0, 1.05, 1.5, 2.0, 3.0)}
    degradations |= {f"blurred by sigma {sigma:g}": blurred(sigma) for sigma in (1, 2, 4, 8)}
    print("| frames | defects passed, unchecked | good flagged, unchecked | refused by the checks |\n|---|---:|---:|---:|")
    for name, degrade in degradations.items():
        flagged, refused = [], 0
        for frame in frames:
            worse = degrade(frame)
            flagged.append(unchecked_score(detector, worse) > detector.threshold)
            refused += detector(worse, not_inspectable="report").status == "not_inspectable"
        flagged = np.array(flagged)
        print(f"| {name} | {int((~flagged[labels]).sum())} / {int(labels.sum())} "
              f"| {int(flagged[~labels].sum())} / {int((~labels).sum())} | {refused} / {len(frames)} |")


def side_by_side(detector: Detector, samples, level: float) -> None:
    """Each defective test image beside a good one, on either side: the model judges one part, so unchecked the
    defective one passes whenever the good one is taken (the larger); checked, the frame gets no verdict."""
    good = [equalise(decode(s.path), HONEST, level) for s in samples if not s.is_anomalous]
    defects = [equalise(decode(s.path), HONEST, level) for s in samples if s.is_anomalous]
    print("| frames | defects passed, unchecked | refused by the checks |\n|---|---:|---:|")
    for name, pair in {"defective left, good right": lambda d, g: np.hstack([d, g]),
                       "good left, defective right": lambda d, g: np.hstack([g, d])}.items():
        frames = [pair(defect, good[i % len(good)]) for i, defect in enumerate(defects)]
        passed = sum(unchecked_score(detector, frame) <= detector.threshold for frame in frames)
        refused = sum(detector(frame, not_inspectable="report").status == "not_inspectable" for frame in frames)
        print(f"| {name} | {passed} / {len(frames)} | {refused} / {len(frames)} |")


if __name__ == "__main__":
    main()
