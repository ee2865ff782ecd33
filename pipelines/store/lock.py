"""One writer per output: OUT/_lock.json names its holder (host, pid, run id) and a lease.

The holder renews the lease from a heartbeat thread. Another job may take the lock over only once
the lease has run out (a holder that crashed on another host of a shared file system), or at
once when the holder was a process on this host that no longer exists. A writer checks that it
still holds the lock before each commit point, so a holder whose lease was taken over (it was
paused longer than the lease) stops instead of writing beside the new one.

Creating the lock file is atomic and exclusive (the whole record is written to a temp file, then
hard-linked to its name, which fails if one exists), and renewing replaces it by rename, so a
reader never sees a partial lock of a live job. A lock file that is unreadable, empty or not a
lock record (what a crash or a hand edit leaves) is judged by its age: older than the lease, it is
expired and taken over; within the lease, the error names the file and how to clear it.
A takeover first renames the expired file away and checks that what it renamed is the expired
lease it read, so two jobs racing for one expired lock cannot both win.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Self

from pipelines.io.files import write_json_atomic

LOCK = "_lock.json"


class LockHeld(OSError):
    """Another job writes this output."""


class LockLost(OSError):
    """This job's lease ran out and another job took the output over."""


def _parse(text: str) -> dict:
    """A lock record, or {"garbage": why} when the text is not one (torn, empty, hand-edited)."""
    try:
        rec = json.loads(text)
    except ValueError:
        return {"garbage": "empty" if not text.strip() else "not JSON"}
    if not isinstance(rec, dict):
        return {"garbage": f"a JSON {type(rec).__name__}, not an object"}
    try:
        ok = (isinstance(rec.get("token"), str) and isinstance(rec.get("pid"), int)
              and not isinstance(rec.get("pid"), bool)
              and all(math.isfinite(float(rec[k])) for k in ("renewed_at", "lease_s")))
    except (KeyError, TypeError, ValueError):
        ok = False
    return rec if ok else {"garbage": "missing or malformed fields (token, pid, renewed_at, lease_s)"}


def read_lock(out_dir: str | Path) -> dict | None:
    """The holder's record; None when there is no lock file; {"garbage": why, "mtime": ...} when
    the file is not a lock record."""
    path = Path(out_dir) / LOCK
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 16).decode("utf-8", errors="replace")
            mtime = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return None
    rec = _parse(text)
    if "garbage" in rec:
        rec["mtime"] = mtime
    return rec


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(holder: dict) -> str:
    if "garbage" in holder:
        return f"unreadable lock ({holder['garbage']}, written {time.time() - holder['mtime']:.0f} s ago)"
    left = float(holder.get("renewed_at", 0)) + float(holder.get("lease_s", 0)) - time.time()
    state = f"expires in {left:.0f} s" if left > 0 else "expired"
    return (f"job {holder.get('job') or '?'} run {holder.get('run_id') or '?'} (pid {holder.get('pid')} on "
            f"host {holder.get('host')}, lease renewed {holder.get('renewed_iso', '?')}, {state})")


class OutputLock:
    """`with OutputLock(out, run_id=..., job=...)`: hold the output for one job."""

    def __init__(self, out_dir: str | Path, *, run_id: str, job: str = "", lease_s: float = 60.0):
        self.out = Path(out_dir)
        self.path = self.out / LOCK
        self.run_id, self.job = run_id, job
        self.lease_s = float(lease_s)
        self.token = uuid.uuid4().hex
        self.held = False
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> dict:
        now = time.time()
        return {"host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id, "job": self.job,
                "token": self.token, "lease_s": self.lease_s, "renewed_at": now,
                "renewed_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}

    def _create(self) -> bool:
        tmp = self.out / f".{LOCK}.new-{self.token[:8]}-{uuid.uuid4().hex[:6]}"
        try:
            with open(tmp, "w") as f:
                json.dump(self._record(), f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)  # atomic and exclusive: the lock appears whole or not at all
            except FileExistsError:
                return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _expired(self, holder: dict) -> bool:
        if "garbage" in holder:
            # whoever left it is not renewing it: expired once older than a lease
            return time.time() > float(holder["mtime"]) + self.lease_s
        if holder.get("host") == socket.gethostname() and not _pid_alive(int(holder["pid"])):
            return True  # a crashed job on this host: no need to wait for its lease
        return time.time() > float(holder["renewed_at"]) + float(holder["lease_s"])

    def _take_over(self, holder: dict) -> None:
        stale = self.out / f".{LOCK}.stale-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, stale)
        except FileNotFoundError:
            return  # someone else moved it; try to create ours
        moved = _parse(stale.read_text(errors="replace"))
        if moved.get("token") != holder.get("token"):
            # we moved a lock taken meanwhile by another job: put it back unless one is there again
            try:
                os.link(stale, self.path)
            except FileExistsError:
                pass
        stale.unlink(missing_ok=True)

    def acquire(self) -> Self:
        self.out.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            if self._create():
                self.held = True
                self._start_heartbeat()
                return self
            holder = read_lock(self.out)
            if holder is None:
                continue
            if "garbage" in holder and not self._expired(holder):
                raise LockHeld(f"{self.path}: the lock file is unreadable ({holder['garbage']}) and was written "
                               f"{time.time() - holder['mtime']:.0f} s ago, within the {self.lease_s:g} s lease. "
                               f"A crash leaves this; it expires by itself after the lease. If no job writes "
                               f"{self.out}, delete {self.path} to clear it now.")
            if not self._expired(holder):
                raise LockHeld(f"{self.out} is being written by another {describe(holder)}; one job at a time "
                               f"writes an output. Wait for it, or use another output directory. If that job "
                               f"crashed on another host, the lock is free once its lease runs out.")
            self._take_over(holder)
        raise LockHeld(f"{self.out}: could not take the lock {self.path} (other jobs keep racing for it)")

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="tandem-lock-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                self.renew()
            except OSError:
                pass  # a file server hiccup; the next beat tries again before the lease runs out

    def renew(self) -> None:
        holder = read_lock(self.out)
        if holder is not None and holder.get("token") == self.token:
            write_json_atomic(self._record(), self.path)
        elif holder is None or "garbage" not in holder:  # an unreadable file: check() decides
            self.lost = describe(holder) if holder else "nobody (the lock file is gone)"

    def check(self) -> None:
        """Raise LockLost unless this job still holds the output (called before each commit point)."""
        holder = read_lock(self.out)
        if self.lost or holder is None or holder.get("token") != self.token:
            who = self.lost or (describe(holder) if holder else "nobody (the lock file is gone)")
            raise LockLost(f"{self.out}: this job (run {self.run_id}) lost its lock to {who}; its lease ran out "
                           "while it was paused. Nothing more is committed; rerun to finish the work.")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held:
            holder = read_lock(self.out)
            if holder and holder.get("token") == self.token:
                self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
