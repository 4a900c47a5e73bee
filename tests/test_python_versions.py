"""The code must run on the oldest Python pyproject.toml admits, though CI's own Python is newer: a line PC keeps the
Python its distribution ships (Ubuntu 22.04: 3.10). vermin reads the code for syntax and standard-library names
newer than that (``datetime.UTC``, ``tomllib``: 3.11). Whole test runs on other Pythons: scripts/python_versions.sh."""
import re
import subprocess
import sys
from importlib.metadata import metadata
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_no_line_of_the_package_needs_a_newer_python_than_it_admits(tmp_path):
    oldest = re.fullmatch(r">=\s*(3\.\d+)", metadata("insightad")["Requires-Python"])[1]
    vermin = Path(sys.executable).with_name("vermin")
    folders = [str(ROOT / name) for name in ("insightad_edge", "insightad_train", "tests", "benchmarks", "scripts")]
    checked = subprocess.run([str(vermin), "--no-tips", "--violations", "--eval-annotations", f"-t={oldest}-", *folders],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    newer = tmp_path / "newer.py"
    newer.write_text("from datetime import UTC\n")
    caught = subprocess.run([str(vermin), "--no-tips", "--violations", "-t=3.10-", str(newer)],
                            capture_output=True, text=True, timeout=120)
    assert caught.returncode != 0 and "datetime.UTC" in caught.stdout
