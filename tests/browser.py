"""Headless Chromium (Debian's package) for the tests that load the operator's page in a real browser."""
import shutil
import subprocess
import tempfile

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str) -> str:
    """Headless Chromium as the CI machine runs it: no sandbox (root), no GPU, no network but loopback."""
    if CHROMIUM is None:
        pytest.fail("Chromium is missing: apt-get install chromium (.ci/run installs it)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,900",
                               "--virtual-time-budget=5000", *args], capture_output=True, text=True, timeout=120)
    return done.stdout
