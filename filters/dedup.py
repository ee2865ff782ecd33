"""Corpus-scale dedup: exact duplicate example audio (hash of decoded 16-bit PCM), near-duplicate
audio by how it sounds (Chromaprint fingerprint, filters/fingerprint.py) and near-duplicate
transcripts (MinHash LSH over word shingles, a second signal: one ASR word can move it).

`signature(example, params)` runs in the workers, next to the audio: it decodes the FLAC once for
the PCM hash and the fingerprint, and computes the transcript's MinHash. `SignatureIndex` matches signatures
incrementally: a check costs one dict lookup plus one LSH query whatever the history, and holds
signatures only (never texts or audio). A job commits the signatures of the examples it keeps in
Parquet beside the shards (SIGNATURE_SCHEMA, kind `dedup`), and the next run loads them back.
`NearDupIndex` is the same on whole examples, with its state in one pickle (small corpora, tests).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from filters.base import Decision, FilterParams
from pipelines.core.contracts import SIGNATURE_SCHEMA  # noqa: F401 (kept importable from here)
from pipelines.core.text import norm_text

STATE = "_state/dedup"
SCHEME = "affine32"  # datasketch's 32-bit permutations: 4 bytes per value


def _decode(example: dict) -> tuple[np.ndarray, int]:
    from pipelines.io.audio import decode_flac
    try:
        return decode_flac(example["audio"])
    except Exception as e:
        raise ValueError(f"example {example.get('example_id')}: audio does not decode as FLAC ({e})") from e


def shingles(text: str, k: int) -> set[bytes]:
    w = norm_text(text).split()
    return {" ".join(w[i:i + k]).encode() for i in range(max(len(w) - k + 1, 0))}


@dataclass(frozen=True)
class DedupParams(FilterParams):
    """filters.dedup (meanings in pipelines/core/defaults/30_filters.yaml)."""

    section: ClassVar[str] = "dedup"

    exact_audio: bool
    near_audio: bool
    audio_max_ber: float
    audio_min_items: int
    audio_min_votes: int
    audio_min_cover: float
    near_text: bool
    jaccard: float
    num_perm: int
    shingle: int
    min_words: int


def minhash_values(text: str, p: DedupParams) -> np.ndarray | None:
    """The transcript's MinHash values, or None when it has fewer than `min_words` words."""
    if len(norm_text(text).split()) < p.min_words:
        return None
    from datasketch import MinHash
    # fixed seed and scheme: signatures comparable across runs and machines
    m = MinHash(num_perm=p.num_perm, seed=1, scheme=SCHEME)
    for sh in shingles(text, p.shingle):
        m.update(sh)
    return np.asarray(m.hashvalues, dtype=np.uint32)


def signature(example: dict, p: DedupParams) -> dict:
    """What the index needs of one example (runs in the worker holding its audio)."""
    ah = fp = None
    if (p.exact_audio or p.near_audio) and example.get("audio"):
        from filters.fingerprint import fingerprint
        from pipelines.io.audio import pcm_hash
        audio, sr = _decode(example)
        if p.exact_audio:
            ah = bytes.fromhex(pcm_hash(audio.T))[:16]
        if p.near_audio:
            fp = fingerprint(audio.mean(axis=0), sr).tolist()
    mh = None
    if p.near_text:
        mh = minhash_values(" ".join(t for t in (example.get("text_ch0"), example.get("text_ch1")) if t), p)
    return {"example_id": example.get("example_id") or "", "audio_hash": ah,
            "minhash": None if mh is None else mh.tolist(), "fingerprint": fp}


def decision_for(eid: str, same: str | None, near: list[tuple[str, float]], threshold: float,
                 sound: list[tuple[str, float]] = ()) -> Decision:
    """The dedup rejection of `eid` given its matches (`SignatureIndex.matches`, `.sounds`), or ok."""
    if same is not None:
        return Decision.reject("dedup", "duplicate_audio", f"example {eid}: same decoded audio as example {same}",
                               {"dedup.exact": 1.0})
    if sound:
        best, ber = sound[0]
        return Decision.reject("dedup", "near_duplicate_audio",
                               f"example {eid}: sounds like example {best} (fingerprint bit error rate "
                               f"{ber:.3f} at the best alignment)", {"dedup.audio_ber": ber})
    if near:
        best, j = near[0]
        return Decision.reject("dedup", "near_duplicate_text",
                               f"example {eid}: transcript near-duplicate of example {best} "
                               f"(estimated Jaccard {j:.2f} >= {threshold})", {"dedup.jaccard": j})
    return Decision.ok("dedup")


class SignatureIndex:
    """Incremental exact + near-duplicate matching over signatures; `check_and_add` is idempotent
    for one example id (a retried worker asking again is not its own duplicate)."""

    def __init__(self, p: DedupParams):
        self.p = p
        self.audio: dict[bytes, str] = {}
        self.lsh = None
        self.sigs: dict[str, object] = {}
        self.fps = None
        if p.near_audio:
            from filters.fingerprint import FingerprintIndex
            self.fps = FingerprintIndex(p.audio_max_ber, p.audio_min_items, p.audio_min_votes, p.audio_min_cover)

    def _mh(self, values):
        from datasketch import LeanMinHash
        return LeanMinHash(seed=1, hashvalues=np.asarray(values, dtype=np.uint32), scheme=SCHEME)

    def add(self, eid: str, audio_hash: bytes | None, minhash, fingerprint=None) -> None:
        copy = False
        if audio_hash is not None and self.p.exact_audio:
            copy = self.audio.setdefault(bytes(audio_hash), eid) != eid
        if self.fps is not None and not copy:  # an exact copy would only repeat its original's
            self.fps.add(eid, fingerprint)
        if minhash is not None and self.p.near_text and eid not in self.sigs:
            from datasketch import MinHashLSH
            if self.lsh is None:
                self.lsh = MinHashLSH(threshold=self.p.jaccard, num_perm=self.p.num_perm)
            mh = self._mh(minhash)
            self.lsh.insert(eid, mh)
            self.sigs[eid] = mh

    def matches(self, sig: dict) -> tuple[str | None, list[tuple[str, float]]]:
        """Everything `sig` duplicates: the example with the same audio (or None), and every
        indexed transcript at estimated Jaccard >= the threshold, best first (ties by id).
        Symmetric (LSH bands and the estimate do not depend on which side asks), so the graph
        these edges build does not depend on the order examples arrive in."""
        eid = sig["example_id"]
        same = None
        ah = sig.get("audio_hash")
        if ah is not None and self.p.exact_audio:
            other = self.audio.get(bytes(ah))
            same = other if other != eid else None
        near: list[tuple[str, float]] = []
        if sig.get("minhash") is not None and self.p.near_text and self.lsh is not None:
            mh = self._mh(sig["minhash"])
            for h in self.lsh.query(mh):
                if h != eid:
                    j = float(mh.jaccard(self.sigs[h]))
                    if j >= self.p.jaccard:
                        near.append((h, j))
            near.sort(key=lambda hj: (-hj[1], hj[0]))
        return same, near

    def sounds(self, sig: dict) -> list[tuple[str, float]]:
        """Every indexed example that sounds like `sig` (fingerprint bit error rate <= the
        threshold), best first; symmetric like `matches`."""
        if self.fps is None:
            return []
        return self.fps.matches(sig["example_id"], sig.get("fingerprint"))

    def check(self, sig: dict) -> Decision:
        return decision_for(sig["example_id"], *self.matches(sig), self.p.jaccard, self.sounds(sig))

    def check_and_add(self, sig: dict) -> Decision:
        d = self.check(sig)
        if d.keep:
            self.add(sig["example_id"], sig.get("audio_hash"), sig.get("minhash"), sig.get("fingerprint"))
        return d

    def __len__(self) -> int:
        return max(len(self.audio), len(self.sigs), 0 if self.fps is None else len(self.fps))


class NearDupIndex:
    """`check_and_add(example) -> Decision` on whole examples; `save()` pickles the state."""

    def __init__(self, out_dir: str | Path, params: DedupParams):
        self.p = params
        self.index = SignatureIndex(self.p)
        self.path = Path(out_dir) / STATE / "index.pkl"
        self.params = (self.p.jaccard, self.p.num_perm, self.p.shingle)
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                state = pickle.load(f)
        except Exception as e:
            raise ValueError(f"{self.path}: dedup state unreadable ({e}); delete it to rebuild from scratch") from e
        if state.get("params") != self.params:
            raise ValueError(f"{self.path}: dedup state was built with (jaccard, num_perm, shingle)="
                             f"{state.get('params')}, config says {self.params}; use the same settings or "
                             "delete the state")
        for row in state.get("rows", []):  # (id, audio hash, minhash[, fingerprint])
            self.index.add(*row)

    def check_and_add(self, example: dict) -> Decision:
        sig = signature(example, self.p)
        d = self.index.check_and_add(sig)
        if d.keep:
            self._rows.append((sig["example_id"], sig["audio_hash"], sig["minhash"], sig["fingerprint"]))
        return d

    @property
    def _rows(self) -> list:
        if not hasattr(self, "_row_list"):
            self._row_list = []
        return self._row_list

    def __len__(self) -> int:
        return len(self.index)

    def save(self) -> None:
        """Atomically persist the index (temp file, fsync, rename)."""
        rows = list(self._rows)
        if self.path.exists():
            with open(self.path, "rb") as f:
                rows = pickle.load(f).get("rows", []) + rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump({"params": self.params, "rows": rows}, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._rows.clear()
