"""A job's side of the catalog: commits into the private working copy, published by rename.

See `catalogs.catalog` for why the published file is never written in place.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import duckdb
from catalogs.catalog import (
    WORKING,
    _apply_manifest,
    _create,
    _finish,
    _fresh,
    _publish_file,
    _retired,
)
from pipelines.store.commit import manifests


class CatalogPublisher:
    """A job's catalog: commits go into the working copy, which is published by atomic rename.

    Nothing here raises: a failure is printed and kept in `problems`, the job goes on, and the
    next call catches up from the manifests. Publishing copies the whole catalog, so after a
    commit it runs only when the time since the last one is at least its cost / `max_share`
    (the share of the driver's time it may take); `publish(force=True)` at the end of a run.
    """

    def __init__(self, out_dir: str | Path, *, max_share: float = 0.05, log=None):
        self.out = Path(out_dir)
        self.work = self.out / WORKING
        self.max_share = max(float(max_share), 1e-6)
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.problems: list[str] = []
        self.publications = 0
        self.seconds = 0.0
        self._dirty = True  # the working copy may miss commits: catch up from the manifests
        self._last = 0.0
        self._cost = 0.0

    def _fail(self, what: str, e: BaseException) -> None:
        msg = (f"catalog: {what} failed ({type(e).__name__}: {e}); the committed files are intact; "
               f"repair the catalog with `tandem catalog build {self.out}`")
        self.problems.append(msg)
        self.log(f"tandem: warning: {msg}")
        self._dirty = True

    def _connect(self) -> duckdb.DuckDBPyConnection:
        self.work.parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(str(self.work))
        except duckdb.IOException:
            raise
        except duckdb.Error:  # an unreadable working copy is rebuilt from the manifests
            return _fresh(self.work)

    def _timed(self, what: str, fn) -> bool:
        t0 = time.perf_counter()
        try:
            fn()
            return True
        except Exception as e:  # noqa: BLE001 - a catalog problem must never stop the job
            self._fail(what, e)
            return False
        finally:
            self.seconds += time.perf_counter() - t0

    def catch_up(self) -> int:
        """Ingest every commit the working copy lacks (a run killed before its catalog update)."""
        count = [0]

        def go():
            con = self._connect()
            try:
                _create(con)
                known = {r[0] for r in con.execute("SELECT commit_id FROM commits").fetchall()}
                ms = manifests(self.out)
                skip = _retired(ms)
                for m in ms:
                    if m["commit_id"] not in known:
                        con.execute("BEGIN")
                        _apply_manifest(con, self.out, m, skip)
                        con.execute("COMMIT")
                        count[0] += 1
            finally:
                con.close()
            self._dirty = False
        self._timed("catching up with the commits", go)
        return count[0]

    def ingest(self, manifest: dict) -> None:
        """After a commit: add it to the working copy, publish when it is time."""
        if self._dirty:
            self.catch_up()
        else:
            def go():
                con = self._connect()
                try:
                    _create(con)
                    con.execute("BEGIN")
                    if not con.execute("SELECT count(*) FROM commits WHERE commit_id = ?",
                                       [manifest["commit_id"]]).fetchone()[0]:
                        _apply_manifest(con, self.out, manifest)
                    con.execute("COMMIT")
                finally:
                    con.close()
            self._timed(f"ingesting commit {manifest['commit_id']}", go)
        self.publish()

    def publish(self, force: bool = False) -> bool:
        if self._dirty:
            self.catch_up()
            if self._dirty:
                return False
        if not force and time.monotonic() - self._last < self._cost / self.max_share:
            return False
        t0 = time.perf_counter()

        def go():
            con = self._connect()
            try:
                _finish(con, self.out)
            finally:
                con.close()
            _publish_file(self.work, self.out)
        ok = self._timed("publishing", go)
        if ok:
            self._cost = time.perf_counter() - t0
            self._last = time.monotonic()
            self.publications += 1
        return ok


def ingest_commit(out_dir: str | Path, manifest: dict) -> None:
    """One commit into the catalog and published (for callers that commit by hand)."""
    CatalogPublisher(out_dir).ingest(manifest)
