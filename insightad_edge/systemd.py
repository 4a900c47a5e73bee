"""systemd's notify protocol for a station run as a service: ``READY=1`` once its line starts, ``WATCHDOG=1`` while
its loop turns, ``STOPPING=1`` at its end. With ``Type=notify`` and ``WatchdogSec=`` in the unit, systemd restarts a
station whose loop has stalled (a sink that blocks, a deadlock) instead of leaving it looking alive.

The protocol is a datagram of ``KEY=value`` lines to the unix socket named in ``$NOTIFY_SOCKET`` (sd_notify(3), a
stable interface that systemd documents for reimplementation); without that variable, as outside systemd, nothing
is sent. No library is needed for it, and the official one (systemd-python) needs libsystemd to build.
"""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Tell systemd ``state`` (e.g. ``READY=1``); whether it was sent (False outside systemd, or if it failed)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket's name
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:  # systemd gone, say: the station goes on, and its watchdog (if any) will say the rest
        log.warning("could not tell systemd %s (%s)", state, exc.strerror or exc)
        return False
    return True
