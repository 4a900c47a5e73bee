"""scripts/stress_copy.py: the same category darker, noisier and portrait, its masks still on its defects."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "stress_copy.py"


def test_the_copy_is_dark_noisy_portrait_and_keeps_every_mask_on_its_defect(mvtec, tmp_path):
    out = tmp_path / "dark"
    subprocess.run([sys.executable, str(SCRIPT), str(mvtec), str(out), "--portrait"], check=True, capture_output=True)
    sources = sorted(p.relative_to(mvtec) for p in mvtec.rglob("*.png"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == sources
    for relative in sources:
        before, after = cv2.imread(str(mvtec / relative)), cv2.imread(str(out / relative))
        height, width = before.shape[:2]
        top = (round(width * 4 / 3) - height) // 2
        assert after.shape[:2] == (round(width * 4 / 3), width)
        if "ground_truth" in relative.parts:
            assert np.array_equal(after[top:top + height], before) and not after[:top].any() and not after[top + height:].any()
        else:
            inside = after[top:top + height].astype(np.float32)
            assert abs(np.median(inside) - 0.1 * np.median(before)) <= 1.5  # a tenth of the light
            assert 1.5 < np.std(inside - 0.1 * before) < 4.5  # sensor noise of about 3 levels
            assert abs(np.median(after[:top]) - np.median(inside)) <= 1.5  # padded at the scene's own level
