"""What a camera's faults do to the verdicts: each test image of a real category, degraded as a line degrades it
(motion blur from a moving part, defocus, sensor noise, a camera set to a lower JPEG quality), then judged.

A fault must either leave the verdicts as they were or make the frames not inspectable; a defective part judged ok
because of the fault is the silent failure this looks for.

    python scripts/capture_faults.py ../shared/data/mvtec_screw [--model exported/screw.onnx]
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
import cv2
import numpy as np

from insightad_edge import Detector
from insightad_edge.detector import DEFECT, NOT_INSPECTABLE, OK
from insightad_edge.errors import NotInspectable


def motion_blur(image: np.ndarray, length: int) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length  # along the image's rows, as a conveyor moves the part
    return cv2.filter2D(image, -1, kernel)


def defocus(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def sensor_noise(image: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0.0, sigma, image.shape)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_UNCHANGED)


FAULTS = {"none": lambda image: image,
          **{f"motion blur {n} px": lambda image, n=n: motion_blur(image, n) for n in (5, 9, 15)},
          **{f"defocus sigma {s}": lambda image, s=s: defocus(image, s) for s in (1, 2)},
          **{f"noise sigma {s}": lambda image, s=s: sensor_noise(image, s) for s in (5, 20)},
          **{f"jpeg quality {q}": lambda image, q=q: jpeg(image, q) for q in (50, 15)}}


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", type=click.Path(exists=True, dir_okay=False), default=None, help="default: the shipped model")
def main(data: Path, model: str | None) -> None:
    detector = Detector(model)
    images = [(path.parent.name == "good", cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
              for path in sorted((data / "test").glob("*/*.png"))]
    goods = sum(good for good, _ in images)
    click.echo(f"{len(images)} test images ({goods} good); counts per verdict")
    click.echo(f"{'fault':20s} {'good ok':>8s} {'good n/i':>9s} {'good flag':>10s}   {'bad flagged':>11s} "
               f"{'bad n/i':>8s} {'bad ok':>7s}")
    for name, fault in FAULTS.items():
        counts = Counter()
        for good, image in images:
            try:
                status = detector(fault(image)).status
            except NotInspectable:
                status = NOT_INSPECTABLE
            counts[good, status] += 1
        click.echo(f"{name:20s} {counts[True, OK]:8d} {counts[True, NOT_INSPECTABLE]:9d} {counts[True, DEFECT]:10d}   "
                   f"{counts[False, DEFECT]:11d} {counts[False, NOT_INSPECTABLE]:8d} {counts[False, OK]:7d}")


if __name__ == "__main__":
    main()
