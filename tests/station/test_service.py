"""The systemd unit a line PC runs the station with: its command, as systemd would start and stop it."""
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from configparser import ConfigParser
from pathlib import Path

import cv2
import numpy as np

from synthetic import part_image

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "insightad-station.service"


def service_section() -> dict:
    parser = ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return dict(parser["Service"])


def test_the_units_command_runs_a_station_that_stops_cleanly_on_systemds_signal(model_path, tmp_path):
    """ExecStart with the site's settings (${SOURCE}, ${HTTP}) in the working directory systemd gives it: it judges
    a part into the log, and on KillSignal ends with exit 0 within TimeoutStopSec, so `systemctl stop` is a clean
    stop; any other end is restarted."""
    service = service_section()
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM" and service["StandardOutput"] == "null"
    folder = tmp_path / "incoming"
    folder.mkdir()
    settings = dict(word.split("=", 1) for word in shlex.split(service["Environment"]))
    settings.update(SOURCE=str(folder), HTTP="127.0.0.1:0")  # what station.env would say, on a free port
    command = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: settings[m.group(1)], service["ExecStart"]))
    assert command[0] == "/opt/insightad/bin/insightad-edge"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTAD_")}
    process = subprocess.Popen([sys.executable, "-m", "insightad_edge.cli", *command[1:]], cwd=tmp_path,
                               env={**environment, "INSIGHTAD_MODEL": str(model_path)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        cv2.imwrite(str(folder / "part.png"), part_image(np.random.default_rng(41), 128)[0])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _logged(tmp_path / "inspections.db"):
            time.sleep(0.2)
        assert _logged(tmp_path / "inspections.db") == 1
    finally:
        process.send_signal(getattr(signal, service["KillSignal"]))
        began = time.monotonic()
        _, err = process.communicate(timeout=int(service["TimeoutStopSec"]))
    assert process.returncode == 0 and time.monotonic() - began < int(service["TimeoutStopSec"]), err
    assert "watch stopped: 1 frames" in err and (tmp_path / "evidence").is_dir()


def _logged(log: Path) -> int:
    if not log.is_file():
        return 0
    with sqlite3.connect(log) as connection:
        try:
            return connection.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
        except sqlite3.OperationalError:  # the station is still making its tables
            return 0
