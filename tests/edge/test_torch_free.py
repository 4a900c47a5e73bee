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


def test_a_station_runs_with_torch_blocked(tmp_path, model_path):
    rng = np.random.default_rng(3)
    writer = cv2.VideoWriter(str(tmp_path / "line.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 10, (96, 96), False)
    for _ in range(5):
        writer.write(part_image(rng, 96)[0])
    writer.release()
    script = BLOCK + (
        "from insightad_edge.cli import main\n"
        f"main(['watch', {str(tmp_path / 'line.avi')!r}, '--model', {str(model_path)!r}, '--format', 'jsonl', "
        f"'--log', {str(tmp_path / 'line.db')!r}, '--save', {str(tmp_path / 'evidence')!r}, '--save-all'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 5 and len(list((tmp_path / "evidence").rglob("*.png"))) >= 5


def test_import_is_light():
    script = "import sys, time; t = time.perf_counter(); import insightad_edge; " \
             "print(time.perf_counter() - t); print(sorted(m for m in ('cv2', 'onnxruntime', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert out[1] == "[]"  # heavy libraries load on first use of Detector, not on import
