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


def service_section(unit: Path = UNIT, section: str = "Service") -> dict:
    parser = ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(unit.read_text())
    return dict(parser[section])


def test_the_unit_for_one_station_per_camera_is_the_stations_unit_but_where_it_keeps_things():
    """A line PC with two cameras runs two stations: the template unit runs one per camera (insightad-station@side,
    settings in /etc/insightad/side.env, its log and evidence in /var/lib/insightad-side). It is the station's
    unit line for line but for where each instance keeps its settings and files, and it has no default SOURCE
    (two instances watching camera 0 in silence): a change to one unit that the other misses fails here."""
    template = UNIT.with_name("insightad-station@.service")
    differences = {("Unit", "Description"): "insightad inspection station %i",
                   ("Service", "StateDirectory"): "insightad-%i",
                   ("Service", "WorkingDirectory"): "/var/lib/insightad-%i",
                   ("Service", "Environment"): "HTTP=0.0.0.0:8080 OPTIONS=",
                   ("Service", "EnvironmentFile"): "/etc/insightad/%i.env"}
    for section in ("Unit", "Service", "Install"):
        one, each = service_section(UNIT, section), service_section(template, section)
        assert one.keys() == each.keys(), section
        for key, value in each.items():
            assert value == differences.get((section, key), one[key]), (section, key, value)


class NotifySocket:
    """What systemd listens on for a service's notifications (sd_notify): a unix datagram socket; each message is
    kept with the time it came."""

    def __init__(self, path: Path):
        import socket
        import threading

        self.path, self.messages = path, []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self):
        while not self._closed.is_set():
            try:
                self.messages.append((time.monotonic(), self._socket.recv(4096).decode()))
            except TimeoutError:
                continue

    def said(self, state: str, since: float = 0.0) -> list[float]:
        return [at for at, message in list(self.messages) if message == state and at >= since]

    def close(self):
        self._closed.set()
        self._thread.join()
        self._socket.close()


def systemd_words(command: str, settings: dict) -> list[str]:
    """COMMAND's words as systemd makes them: ${NAME} stays in its one word whatever it holds, $NAME as a word of
    its own is as many as it holds (none when empty)."""
    words = []
    for word in shlex.split(command):
        if (split := re.fullmatch(r"\$(\w+)", word)) is not None:
            words += settings[split.group(1)].split()
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda name: settings[name.group(1)], word))
    return words


def start_unit(command: list[str], model_path: Path, workdir: Path, notify: Path) -> subprocess.Popen:
    """The unit's command as systemd runs it, with this checkout's insightad-edge in place of the installed one."""
    assert command[:3] == ["/usr/bin/env", command[1], "/opt/insightad/bin/insightad-edge"], command
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTAD_")}
    return subprocess.Popen([*command[:2], sys.executable, "-m", "insightad_edge.cli", *command[3:]], cwd=workdir,
                            env={**environment, "INSIGHTAD_MODEL": str(model_path), "NOTIFY_SOCKET": str(notify)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_the_units_command_runs_a_station_that_stops_cleanly_on_systemds_signal(model_path, tmp_path):
    """ExecStart with the site's settings (${SOURCE}, ${HTTP}) in the working directory systemd gives it: it judges
    a part into the log, and on KillSignal ends with exit 0 within TimeoutStopSec, so `systemctl stop` is a clean
    stop; any other end is restarted. It tells systemd (Type=notify) when its line starts and pings the watchdog
    while its loop turns, well within WatchdogSec."""
    from insightad_edge.station import STALL_S

    service = service_section()
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM" and service["StandardOutput"] == "null"
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > STALL_S
    folder = tmp_path / "incoming"
    folder.mkdir()
    settings = dict(word.split("=", 1) for word in shlex.split(service["Environment"]))
    settings.update(SOURCE=str(folder / "line 1"), HTTP="127.0.0.1:0")  # as station.env would say, on a free port
    folder = folder / "line 1"
    folder.mkdir()
    command = systemd_words(service["ExecStart"], settings)
    assert command[1] == f"INSIGHTAD_SOURCE={folder}" and command[3] == "watch"  # the name's space kept, in one word
    assert command == systemd_words(service["ExecStart"], {**settings, "OPTIONS": "--stride 2 --existing"})[:-3]
    systemd = NotifySocket(tmp_path / "notify")
    process = start_unit(command, model_path, tmp_path, systemd.path)
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
    systemd.close()
    ready, pings, stopping = (systemd.said(state) for state in ("READY=1", "WATCHDOG=1", "STOPPING=1"))
    assert len(ready) == 1 and len(stopping) == 1 and ready[0] < pings[0] and pings[-1] <= stopping[0]
    gaps = np.diff([ready[0], *pings, began])
    assert gaps.max() < int(service["WatchdogSec"]) / 2, gaps  # pinged at least twice per watchdog period


def _logged(log: Path) -> int:
    if not log.is_file():
        return 0
    with sqlite3.connect(log) as connection:
        try:
            return connection.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
        except sqlite3.OperationalError:  # the station is still making its tables
            return 0


def test_the_units_station_keeps_a_stream_password_out_of_the_command_line_ps_shows(model_path, tmp_path):
    """station.env's SOURCE reaches watch in its environment: a stream URL's password on the command line is shown
    by `ps` to every user of the line PC (/proc/PID/cmdline is world-readable; /proc/PID/environ is not). Here
    a camera that is not there: the station runs, says the stream is lost, and names it with the password masked."""
    service = service_section()
    settings = dict(word.split("=", 1) for word in shlex.split(service["Environment"]))
    settings.update(SOURCE="http://operator:Pa55w0rd@127.0.0.1:9/video.mjpg", HTTP="127.0.0.1:0")
    systemd = NotifySocket(tmp_path / "notify")
    process = start_unit(systemd_words(service["ExecStart"], settings), model_path, tmp_path, systemd.path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not systemd.said("READY=1"):
            time.sleep(0.2)
        assert systemd.said("READY=1"), "the station never started its line"
        shown = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"insightad_edge.cli" in shown and b"watch" in shown
        assert not any(b"Pa55w0rd" in word for word in shown), shown
        assert b"Pa55w0rd" in Path(f"/proc/{process.pid}/environ").read_bytes()  # where the station reads it
    finally:
        process.send_signal(getattr(signal, service["KillSignal"]))
        _, err = process.communicate(timeout=int(service["TimeoutStopSec"]))
        systemd.close()
    assert process.returncode == 0, err
    assert "http://operator:***@127.0.0.1:9/video.mjpg" in err and "Pa55w0rd" not in err, err
    assert "are its address, port, path, user and password right?" in err  # what to check, as OpenCV never says why
    assert err.count("cannot open") == 1, err  # said once, not again by the reader's own log line
