"""What a job must know of the committed output, kept off the driver: committed work keys (resume),
source ids (the same audio under another name), dedup signatures, and which work this run has
claimed and taken.

Dedup keeps one example per cluster of duplicates, and which one does not depend on the order
parts arrive in. Judging streams: every judged signature (kept or not) joins the index, an example
matching any judged one is rejected provisionally and its matches are recorded as edges
(`duplicate_of` in its signature row, so they survive a crash). Matching is symmetric, so the
clusters (connected components of the edges) are the same in any order; `settle_plan` then names,
per cluster, the keeper by the canonical rule: the smallest example id. Example ids hash the
source's decoded audio (or synthesis script), the span and the config, so the choice depends on
the data only, not on file names, paths or timing (the rule of datatrove's and NeMo Curator's batch dedup: one survivor per cluster by id).
A source judged under several names (the same decoded audio) is held by the first judged name;
`source_plan` names the canonical one (the smallest uri; settling swaps only source and rejection
rows, since the examples of both names are the same).

Under Ray it runs as one actor beside the driver (`ray_jobs.execute`); in-process otherwise. It
loads once per run from the committed `sources` and `dedup` files, and every call after that
costs in proportion to the rows it is given, never to the history.
"""

from __future__ import annotations

from pathlib import Path

from filters.dedup import DedupParams, SignatureIndex, decision_for
from pipelines.io.files import iter_rows
from pipelines.store.commit import committed_files


class CommitIndex:
    def __init__(self, out_dir: str | Path, dedup: DedupParams | None = None, *, signatures: bool = True):
        """`signatures=False`: start the duplicate graph empty (re-filtering judges every example
        that passes the filters again, so examples a filter now rejects leave the graph)."""
        self.out = str(out_dir)
        self.keys: set[str] = set()
        self.sources: dict[str, str] = {}  # source id -> the work key that judged it first
        self.sigs = SignatureIndex(dedup) if dedup is not None else None
        self.claimed: dict[str, str] = {}  # work key -> claimant (a block of this run)
        self.taken: dict[str, str] = {}  # work key -> part id whose results the driver took
        self.counts = {"skipped": 0, "repeated": 0}
        # the duplicate graph: union-find over examples with an edge; which judged examples are
        # rejected as duplicates now; where each judged example's rows are (file stems)
        self.parent: dict[str, str] = {}
        self.dup: dict[str, list[str]] = {}  # example id -> its edges, for the rejected ones
        self.where: dict[str, list[str]] = {}
        self.moved: dict[str, str] = {}  # file stem -> the stem a settle commit rewrote it into
        self.ahash: dict[str, bytes] = {}
        # the same decoded audio under several names: the holder's (uri, stems) and the others'
        self.src_at: dict[str, tuple[str, list[str]]] = {}
        self.src_dup: dict[str, dict[str, tuple[str, list[str]]]] = {}
        for path in committed_files(out_dir, "sources"):
            for row in iter_rows([path], columns=["work_key", "source_id", "uri", "status"]):
                self.keys.add(row["work_key"])
                sid, wk = row["source_id"], row["work_key"]
                if not sid:
                    continue
                if row["status"] == "duplicate":
                    self.sources.setdefault(sid, wk)
                    self.src_dup.setdefault(sid, {})[wk] = (row["uri"] or "", [path.stem])
                elif sid not in self.src_at:
                    self.sources[sid] = wk
                    self.src_at[sid] = (row["uri"] or "", [path.stem])
        if self.sigs is not None and signatures:
            for kind in ("dedup", "dupes"):
                for path in committed_files(out_dir, kind):
                    for row in iter_rows([path]):
                        self._load_sig(row, path.stem, rejected=kind == "dupes")

    def _load_sig(self, row: dict, stem: str, rejected: bool) -> None:
        self.where[row["example_id"]] = [stem]
        self._add(row["example_id"], row["audio_hash"], row["minhash"], list(row.get("duplicate_of") or []),
                  rejected, row.get("fingerprint"))

    def _add(self, eid: str, audio_hash, minhash, edges: list[str], rejected: bool, fingerprint=None) -> None:
        """`eid` joins the index and the duplicate graph (a rejected one with its edges)."""
        self.sigs.add(eid, audio_hash, minhash, fingerprint)
        if audio_hash is not None:
            self.ahash[eid] = bytes(audio_hash)
        if rejected:
            self.dup[eid] = edges
        for other in edges:
            self._union(eid, other)

    def _find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def ping(self) -> int:
        return len(self.keys)

    def is_committed(self, key: str) -> bool:
        return key in self.keys

    def committed_work_keys(self) -> set[str]:
        return set(self.keys)

    def claim(self, keys: list[str], claimant: str) -> list[bool]:
        """Which of `keys` this block should process: not committed, not claimed by another block
        (a listing that names one input twice); a retried block (same claimant) gets its own again."""
        out = []
        mine: set[str] = set()
        for k in keys:
            ok = k not in self.keys and k not in mine and self.claimed.get(k, claimant) == claimant
            if ok:
                self.claimed[k] = claimant
                mine.add(k)
            else:
                self.counts["skipped"] += 1
            out.append(ok)
        return out

    def judge(self, entries: list[dict]) -> list[dict]:
        """Per finished item {work_key, source_id, uri, stem, sigs}: is its source already judged
        under another work key, and which of its examples duplicate judged ones (provisionally:
        `settle_plan` fixes the keeper). Every judged signature joins the index."""
        out = []
        for e in entries:
            sid, wk = e.get("source_id"), e["work_key"]
            if sid and self.sources.setdefault(sid, wk) != wk:
                self._stem_of(self.src_dup.setdefault(sid, {}), wk, e.get("uri"), e.get("stem"))
                out.append({"duplicate_of": self.sources[sid], "decisions": []})
                continue
            if sid:
                self._stem_of(self.src_at, sid, e.get("uri"), e.get("stem"))
            out.append({"duplicate_of": None, "decisions": self.judge_signatures(e.get("sigs") or [], e.get("stem"))})
        return out

    def judge_signatures(self, sigs: list[dict | None], stem: str | None = None) -> list[dict | None]:
        """Judge example signatures (None: not compared) whose rows are in the files of `stem`
        (None: not written yet, see `located`); per signature, None or its provisional rejection."""
        return [None if self.sigs is None or sig is None else self._judge_sig(sig, stem) for sig in sigs]

    def _judge_sig(self, sig: dict, stem: str | None) -> dict | None:
        eid = sig["example_id"]
        seen = eid in self.where
        stems = self.where.setdefault(eid, [])
        if stem is not None and stem not in stems:  # a part written twice (a retried task) leaves two
            stems.append(stem)
        if seen and eid not in self.dup:
            return None
        same, near = self.sigs.matches(sig)
        sound = self.sigs.sounds(sig)
        edges = sorted({*([same] if same else []), *(h for h, _ in near), *(h for h, _ in sound)})
        if not seen:
            self._add(eid, sig.get("audio_hash"), sig.get("minhash"), edges, rejected=bool(edges),
                      fingerprint=sig.get("fingerprint"))
        if not edges:
            return None
        d = decision_for(eid, same, near, self.sigs.p.jaccard, sound)
        return {"filter": d.filter, "reason": d.reason, "detail": d.detail, "metrics": dict(d.metrics or {}),
                "duplicate_of": edges}

    def located(self, eids: list[str], stem: str) -> None:
        """The rows of these judged examples are now in the files of `stem` (and only there)."""
        for eid in eids:
            self.where[eid] = [stem]

    def signature_row(self, eid: str) -> dict:
        """A judged example's signature row (SIGNATURE_SCHEMA less source_id), with its edges
        when it is rejected as a duplicate."""
        mh = self.sigs.sigs.get(eid)
        fp = None if self.sigs.fps is None else self.sigs.fps.fps.get(eid)
        return {"example_id": eid, "audio_hash": self.ahash.get(eid),
                "minhash": None if mh is None else mh.hashvalues.tolist(),
                "fingerprint": None if fp is None else fp.tolist(), "duplicate_of": self.dup.get(eid)}

    # settling: the canonical keeper of each cluster -----------------------------------------------
    @staticmethod
    def _stem_of(d: dict, key: str, uri: str | None, stem: str | None) -> None:
        _, stems = d.setdefault(key, (uri or "", []))
        if stem is not None and stem not in stems:
            stems.append(stem)

    def source_plan(self) -> list[dict]:
        """Sources held under another name than their canonical one (the smallest uri, then work
        key): [{source_id, keeper: (work key, uri), holder: (work key, uri), stems}]."""
        plan = []
        for sid, others in self.src_dup.items():
            if sid not in self.src_at:
                continue
            holder = (self.sources[sid], self.src_at[sid][0])
            best = min([(uri, wk) for wk, (uri, _) in others.items()] + [holder[::-1]])
            if best[1] != holder[0]:
                stems = [*self.src_at[sid][1], *others[best[1]][1]]
                plan.append({"source_id": sid, "keeper": best[::-1], "holder": holder,
                             "stems": [self._resolve(s) for s in stems]})
        return plan

    def _resolve(self, s: str) -> str:
        while s in self.moved:
            s = self.moved[s]
        return s

    def _stems(self, eid: str) -> list[str]:
        return [self._resolve(s) for s in self.where.get(eid, [])]

    def settle_plan(self) -> list[dict]:
        """The moves that make every cluster's kept example its smallest id: [{example_id, to
        ("shards" | "rejected"), keeper, stems, and for a demoted one the rejection's reason,
        detail, metrics}]. Costs in proportion to the examples with duplicates."""
        clusters: dict[str, list[str]] = {}
        for x in list(self.parent):
            clusters.setdefault(self._find(x), []).append(x)
        plan = []
        for members in clusters.values():
            keeper = min(m for m in members if m in self.where) if any(m in self.where for m in members) else None
            if keeper is None:
                continue
            for m in sorted(members):
                if m not in self.where:
                    continue
                if m == keeper and m in self.dup:
                    plan.append({"example_id": m, "to": "shards", "keeper": m, "stems": self._stems(m)})
                elif m != keeper and m not in self.dup:
                    plan.append({"example_id": m, "to": "rejected", "keeper": keeper, "stems": self._stems(m),
                                 **self._why(m, keeper)})
        return plan

    def _why(self, eid: str, keeper: str) -> dict:
        fps = self.sigs.fps.fps if self.sigs.fps is not None else {}
        ber = self.sigs.fps.pair(fps[keeper], fps[eid]) if eid in fps and keeper in fps else None
        if eid in self.ahash and self.ahash[eid] == self.ahash.get(keeper):
            d = decision_for(eid, keeper, [], self.sigs.p.jaccard)
            detail = d.detail
        elif ber is not None and ber <= self.sigs.p.audio_max_ber:
            d = decision_for(eid, None, [], self.sigs.p.jaccard, [(keeper, ber)])
            detail = d.detail
        else:
            a, b = self.sigs.sigs.get(eid), self.sigs.sigs.get(keeper)
            j = float(a.jaccard(b)) if a is not None and b is not None else 0.0
            d = decision_for(eid, None, [(keeper, j)], self.sigs.p.jaccard)
            detail = (f"example {eid}: in the cluster of near-duplicates kept as example {keeper} "
                      f"(estimated transcript Jaccard with it {j:.2f})")
        return {"filter": d.filter, "reason": d.reason, "detail": detail + " (keeper: the smallest example id)",
                "metrics": dict(d.metrics or {})}

    def settled(self, plan: list[dict], stems: list[str], new_stem: str, source_plan: list[dict] = ()) -> None:
        """A settle commit moved `plan`'s examples, swapped `source_plan`'s holders and rewrote the
        files of `stems` into `new_stem`."""
        for s in stems:
            if s != new_stem:
                self.moved[s] = new_stem
        for p in source_plan:
            sid, (kwk, kuri), (hwk, huri) = p["source_id"], p["keeper"], p["holder"]
            self.sources[sid] = kwk
            self.src_at[sid] = (kuri, [new_stem])
            self.src_dup[sid].pop(kwk, None)
            self.src_dup[sid][hwk] = (huri, [new_stem])
        for p in plan:
            eid = p["example_id"]
            if p["to"] == "shards":
                self.dup.pop(eid, None)
            else:
                self.dup[eid] = sorted({*self.dup.get(eid, []), p["keeper"]})

    def take(self, keys: list[str], part_id: str) -> bool:
        """The driver takes a part's results unless another part already delivered these work
        items (a task Ray ran twice); then the part is dropped."""
        if any(self.taken.get(k, part_id) != part_id or k in self.keys for k in keys):
            self.counts["repeated"] += 1
            return False
        for k in keys:
            self.taken[k] = part_id
        return True

    def committed(self, keys: list[str]) -> None:
        self.keys.update(keys)
        for k in keys:
            self.taken.pop(k, None)
            self.claimed.pop(k, None)

    def stats(self) -> dict:
        return {**self.counts, "committed_keys": len(self.keys), "sources": len(self.sources),
                "signatures": 0 if self.sigs is None else len(self.sigs),
                "duplicate_examples": len(self.dup)}
