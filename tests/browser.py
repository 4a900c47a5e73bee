"""Headless Chromium (Debian's package) for the tests that load the operator's page in a real browser."""
import contextlib
import shutil
import subprocess
import tempfile

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _executable() -> str:
    if CHROMIUM is None:
        pytest.fail("Chromium is missing: apt-get install chromium (.ci/run installs it)")
    return CHROMIUM


def chromium(*args: str) -> str:
    """Headless Chromium as the CI machine runs it: no sandbox (root), no GPU, no network but loopback."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([_executable(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,900",
                               "--virtual-time-budget=5000", *args], capture_output=True, text=True, timeout=120)
    return done.stdout


@contextlib.contextmanager
def open_page(url: str, **context):
    """The page at URL left open in Chromium, as on the line's screen, driven by Playwright: a page that refreshes
    itself is tested across the verdicts it follows, not only as a fresh load shows the latest one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_executable(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, **context)  # timezone_id, locale
            page.goto(url)
            yield page
        finally:
            browser.close()
