"""Listening TCP sockets of processes (``ss -ltnp``) and whether an address is on loopback.

Shared by the Ray and Slurm tests, which check that every listener of a Ray cluster they start
is on a loopback address.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess


def tcp_listeners() -> list[tuple[str, int, str]]:
    """``(local address, pid, process name)`` of every listening TCP socket ``ss`` shows."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        for comm, pid in re.findall(r'\("([^"]*)",pid=(\d+),', line):
            found.append((fields[3], int(pid), comm))
    return found


def is_loopback(address: str) -> bool:
    """``ss`` local address (``127.0.0.1:80``, ``[::ffff:127.0.0.1]:80``, ``*:80``) on loopback?"""
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # "*": every interface
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback
