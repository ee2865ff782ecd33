"""Attempt markers: how many times a worker died on one input, counted only when it was the input.

A model stage writes OUT/_attempts/<work key>.<stage> before it processes an item and removes it
when the call returns (with a result, a rejection or a retry). A marker found on entry is an
attempt that never returned. It counts as a death on this input only when that attempt ran in
this same run (the run's driver is alive: Ray restarted the worker and retried the item) on a
node that is still alive. A marker from an earlier run means the job ended while the item was in
flight (a driver kill, a cancelled job): not the input's fault, not counted. A node that was lost
is not counted either. The deaths counted, with their pids and hosts, are the quarantine's evidence.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from pathlib import Path


def here() -> dict:
    """Where this attempt runs: pid, host, Ray node (when in a Ray worker)."""
    info = {"pid": os.getpid(), "host": socket.gethostname(), "node": None}
    ray = sys.modules.get("ray")
    if ray is not None:
        with contextlib.suppress(Exception):  # no runtime context: not a Ray worker
            if ray.is_initialized():
                info["node"] = ray.get_runtime_context().get_node_id()
    return info


def node_lost(node: str | None) -> bool:
    """True when Ray says `node` is dead (its workers died with it, whatever they processed)."""
    ray = sys.modules.get("ray")
    if not node or ray is None:
        return False
    try:
        return ray.is_initialized() and not any(n.get("NodeID") == node and n.get("Alive") for n in ray.nodes())
    except Exception:  # noqa: BLE001 - cannot ask: count it, as before
        return False


def read(marker: Path) -> dict | None:
    """The marker's record; None when absent. An unreadable one (a crash while writing it, or the
    old plain count) is an attempt of an unknown run: never counted."""
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {"run": None, "deaths": []}
    try:
        rec = json.loads(text)
    except ValueError:
        return {"run": None, "deaths": []}
    if not isinstance(rec, dict) or not isinstance(rec.get("deaths"), list):
        return {"run": None, "deaths": []}
    return rec


def enter(marker: Path, run: str | None) -> list[dict]:
    """Record an attempt starting here; returns the deaths on this input counted so far
    (including the previous attempt's, when it died in this run on a live node)."""
    prev = read(marker)
    deaths = list((prev or {}).get("deaths") or [])
    if prev is not None and prev.get("run") == run and not node_lost(prev.get("node")):
        deaths.append({k: prev.get(k) for k in ("pid", "host", "node")})
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"run": run, **here(), "deaths": deaths}))
    os.replace(tmp, marker)  # whole or absent: a torn marker would read as an unknown run
    return deaths


def describe(deaths: list[dict]) -> str:
    return ", ".join(f"pid {d.get('pid')} on {d.get('host')}" for d in deaths)
