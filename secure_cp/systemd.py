"""systemd integration without a dependency: sd_notify READY/STOPPING/WATCHDOG over $NOTIFY_SOCKET."""
from __future__ import annotations

import asyncio
import os
import socket


def notify(state: str) -> bool:
    """Send one sd_notify datagram; False when not running under systemd (no NOTIFY_SOCKET)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(state.encode(), addr)
        except OSError:
            return False
    return True


async def watchdog() -> None:
    """Ping the systemd watchdog at half its interval while the event loop is alive (WatchdogSec= in the unit)."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or not os.environ.get("NOTIFY_SOCKET"):
        return
    period = int(usec) / 2e6
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(period)
