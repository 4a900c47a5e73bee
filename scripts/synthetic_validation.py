"""The synthetic-defect validation of any model, as `fit` computes it for its candidates.

    python scripts/synthetic_validation.py DATA MODEL [MODEL ...]

MODEL is an exported .onnx (scored by onnxruntime) or a training run folder (scored by torch). The
held-back images are the ones `fit` sets aside with its default --holdout and --seed. Prints the AUROC
between those images and their synthetic-defect copies, per kind, and what the model's threshold catches.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from insightad_train.anomalies import synthetic_validation
from insightad_train.config import FitConfig
from insightad_train.data import load_dataset
from insightad_train.evaluate import open_model
from insightad_train.fit import split_holdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("models", type=Path, nargs="+")
    args = parser.parse_args()
    _, holdout = split_holdout(load_dataset(args.data).train, FitConfig.holdout, FitConfig.seed)
    for model in args.models:
        metadata, infer, _ = open_model(model)
        result = synthetic_validation(metadata, infer, holdout, FitConfig.seed)
        kinds = ", ".join(f"{kind} {value:.2f}" for kind, value in result["by_kind"].items())
        print(f"{model}: synthetic AUROC {result['auroc']:.3f} ({kinds}); the threshold catches "
              f"{result['caught_at_threshold']:.0%}, flags {result['good_flagged_at_threshold']:.0%} of the good")


if __name__ == "__main__":
    main()
