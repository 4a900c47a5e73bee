"""A bounded load run against `insightad-edge serve` on loopback: requests/s and latency percentiles.

    python benchmarks/server_load.py --data ../shared/data/mvtec_screw [--model PATH] [--requests 400] [--clients 4]

Starts the server on a free 127.0.0.1 port, sends a fixed number of `POST /infer` requests (1024x1024 PNGs
from DATA's test split) from several client threads, stops the server, and prints the numbers. Talks to
127.0.0.1 only.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--requests", "count", default=400, show_default=True)
@click.option("--clients", default=4, show_default=True)
@click.option("--workers", default=os.cpu_count() or 1, show_default=True, help="Server inference threads.")
def main(data: Path, model: Path | None, count: int, clients: int, workers: int) -> None:
    images = sorted((data / "test").rglob("*.png"))[::8][:20]
    bodies = [json.dumps({"image": base64.b64encode(p.read_bytes()).decode()}).encode() for p in images]
    port = free_port()
    command = [sys.executable, "-m", "insightad_edge.cli", "serve", "--port", str(port), "--workers", str(workers)]
    if model:
        command += ["--model", str(model)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.25)

        def one(i: int) -> tuple[float, int]:
            began = time.perf_counter()
            request = urllib.request.Request(url + "/infer", data=bodies[i % len(bodies)],
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
                return time.perf_counter() - began, response.status

        for i in range(clients):
            one(i)  # warm-up
        began = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, range(count)))
        wall = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=30)
    latency = np.array([r[0] for r in results]) * 1000
    statuses = sorted({r[1] for r in results})
    print(f"{count} requests, {clients} clients, server workers {workers}, {os.cpu_count()} cores: "
          f"{count / wall:.1f} requests/s, latency p50 {np.percentile(latency, 50):.1f} ms, "
          f"p95 {np.percentile(latency, 95):.1f} ms, statuses {statuses}")


if __name__ == "__main__":
    main()
