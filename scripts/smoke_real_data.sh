#!/usr/bin/env bash
# The whole chain as a user runs it, on a tiny subset of a real MVTec-layout category:
#   fit -> export -> evaluate -> insightad-edge info -> insightad-edge score --model
#
#   scripts/smoke_real_data.sh ../shared/data/mvtec_screw [WORKDIR]
#
# The subset is made of symbolic links in WORKDIR (default: a temporary folder); nothing is copied.
set -euo pipefail
data=$(cd "$1" && pwd)
work=${2:-$(mktemp -d)}
subset="$work/subset/$(basename "$data")"
mkdir -p "$subset/train/good"
ls "$data/train/good" | head -40 | while read -r f; do ln -sf "$data/train/good/$f" "$subset/train/good/$f"; done
for split in "$data"/test/*; do
  kind=$(basename "$split")
  mkdir -p "$subset/test/$kind"
  ls "$split" | head -3 | while read -r f; do
    ln -sf "$split/$f" "$subset/test/$kind/$f"
    mask="$data/ground_truth/$kind/${f%.*}_mask.png"
    if [ -f "$mask" ]; then mkdir -p "$subset/ground_truth/$kind"; ln -sf "$mask" "$subset/ground_truth/$kind/"; fi
  done
done

set -x
insightad-train fit --data "$subset" --out "$work/run" --epochs 2 --image-size 128
insightad-train export "$work/run" --out "$work/model.onnx"
insightad-train evaluate "$work/model.onnx" --data "$subset" --out "$work/report"
insightad-edge info "$work/model.onnx"
insightad-edge score "$subset/test" --recursive --model "$work/model.onnx" --format jsonl
