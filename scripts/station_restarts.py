"""Real-data check that a station killed mid-shift passes no part unjudged and judges none twice.

    python scripts/station_restarts.py DATA [--kills 2] [--down-seconds 3] [--interval 0.12]

A camera writes every test image of an MVTec-layout DATA folder into a watched folder, one every INTERVAL
seconds (each appears whole: written under a temporary name, then renamed). The station (`insightad-edge watch`
with a log and evidence, the shipped model unless $INSIGHTAD_MODEL says otherwise) is killed with SIGKILL KILLS
times while the parts keep coming, stays down DOWN seconds (systemd's unit restarts after 5), and is started
again with the same command. At the end it is stopped with SIGTERM, and the log must hold every part exactly
once. Prints the counts and the `opened` events; works in a temporary folder and keeps no image.
"""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--kills", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--down-seconds", type=click.FloatRange(min=0), default=3.0, show_default=True)
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.12, show_default=True,
              help="Seconds between two parts.")
def main(data: Path, kills: int, down_seconds: float, interval: float) -> None:
    images = sorted((data / "test").rglob("*.png"))
    names = [f"{i:03d}_{image.parent.name}.png" for i, image in enumerate(images)]
    with tempfile.TemporaryDirectory() as work:
        incoming, log = Path(work) / "incoming", Path(work) / "line.db"
        incoming.mkdir()
        command = [sys.executable, "-m", "insightad_edge.cli", "watch", str(incoming), "--log", str(log),
                   "--save", str(Path(work) / "evidence")]

        def start() -> subprocess.Popen:
            return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def camera() -> None:
            for image, name in zip(images, names):
                partial = incoming / f".{name}.tmp"
                shutil.copy(image, partial)
                os.replace(partial, incoming / name)
                time.sleep(interval)

        station = start()
        time.sleep(2.0)  # the model loaded, the folder watched
        writer = threading.Thread(target=camera)
        writer.start()
        between = len(images) * interval / (kills + 1)
        for _ in range(kills):
            time.sleep(max(0.0, between - down_seconds))
            station.send_signal(signal.SIGKILL)
            station.wait()
            time.sleep(down_seconds)  # parts keep coming while no station watches
            station = start()
        writer.join()
        time.sleep(5.0 + 2 * interval)  # the last parts settled and judged
        station.send_signal(signal.SIGTERM)
        code = station.wait()
        with sqlite3.connect(log) as connection:
            logged = [Path(row[0]).name for row in connection.execute("SELECT frame FROM inspections")]
            opened = [row[0] for row in connection.execute("SELECT message FROM events WHERE kind = 'opened'")]
    missing = sorted(set(names) - set(logged))
    twice = sorted({name for name in logged if logged.count(name) > 1})
    click.echo(f"{len(images)} parts written, station killed {kills} times and down {down_seconds:g} s each; "
               f"last stop exit {code}")
    click.echo(f"in the log: {len(logged)} verdicts of {len(set(logged))} parts; missing {len(missing)}, "
               f"judged twice {len(twice)}")
    for message in opened:
        click.echo(f"  opened: {message}")
    if missing or twice or code != 0:
        click.echo(f"missing: {missing[:10]}; twice: {twice[:10]}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
