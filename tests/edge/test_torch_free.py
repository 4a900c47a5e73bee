"""The edge must run where torch is not installed: block it in a fresh interpreter and do real work."""
import json
import subprocess
import sys

import cv2
import numpy as np

from synthetic import part_image

BLOCK = "import sys; sys.modules['torch'] = None; sys.modules['pytorch_msssim'] = None; sys.modules['insightad_train'] = None\n"


def test_edge_scores_a_folder_with_torch_blocked(tmp_path, model_path):
    rng = np.random.default_rng(2)
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), part_image(rng, 96)[0])
    script = BLOCK + (
        "import insightad_edge\n"
        f"print(insightad_edge.Detector({str(model_path)!r})({str(tmp_path / '0.png')!r}).score)\n"
        "from insightad_edge.cli import main\n"
        f"main(['score', {str(tmp_path)!r}, '--model', {str(model_path)!r}, '--format', 'jsonl'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    float(lines[0])
    assert [json.loads(line)["error"] for line in lines[1:]] == [None, None]
    assert "torch" not in done.stderr


def test_import_is_light():
    script = "import sys, time; t = time.perf_counter(); import insightad_edge; " \
             "print(time.perf_counter() - t); print(sorted(m for m in ('cv2', 'onnxruntime', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert out[1] == "[]"  # heavy libraries load on first use of Detector, not on import
