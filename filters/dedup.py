"""Corpus-scale dedup on the driver: exact duplicate example audio (hash of decoded 16-bit PCM) and
near-duplicate transcripts (MinHash LSH over word shingles).

State lives under OUT/_state/dedup and holds signatures only (PCM hashes, MinHash LSH buckets),
never texts or audio, so memory grows with the number of examples by a few hundred bytes each.
`save()` writes it atomically; a resumed job reopens it.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from tandem.filters.base import Decision, build_params, filter_section
from tandem.pipelines.core.text import norm_text

STATE = "_state/dedup"


def audio_hash(example: dict) -> str:
    """Hash of the decoded PCM (two FLAC encodings of the same samples hash the same)."""
    from tandem.pipelines.io.audio import decode_flac, pcm_hash
    try:
        audio, _ = decode_flac(example["audio"])
    except Exception as e:
        raise ValueError(f"example {example.get('example_id')}: audio does not decode as FLAC ({e})") from e
    return pcm_hash(audio.T)


def shingles(text: str, k: int) -> set[bytes]:
    w = norm_text(text).split()
    return {" ".join(w[i:i + k]).encode() for i in range(max(len(w) - k + 1, 0))}


@dataclass(frozen=True)
class DedupParams:
    """filters.dedup (meanings in pipelines/core/defaults/30_filters.yaml)."""

    exact_audio: bool
    near_text: bool
    jaccard: float
    num_perm: int
    shingle: int
    min_words: int

    @classmethod
    def from_config(cls, cfg: dict) -> DedupParams:
        return build_params(cls, filter_section(cfg, "dedup"), "filters.dedup")


class NearDupIndex:
    """`check_and_add(example) -> Decision`: reject exact audio and near-duplicate text duplicates."""

    def __init__(self, out_dir: str | Path, cfg: dict):
        p = DedupParams.from_config(cfg)
        self.exact, self.near, self.jaccard = p.exact_audio, p.near_text, p.jaccard
        self.num_perm, self.k, self.min_words = p.num_perm, p.shingle, p.min_words
        self.path = Path(out_dir) / STATE / "index.pkl"
        self.audio: dict[bytes, str] = {}  # 16-byte PCM hash -> example id
        self.lsh = None
        self.sigs: dict[str, object] = {}  # example id -> MinHash (LSH keeps keys only)
        self.params = (self.jaccard, self.num_perm, self.k)
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
        self.audio, self.lsh, self.sigs = state["audio"], state["lsh"], state["sigs"]

    def _minhash(self, text: str):
        from datasketch import MinHash
        m = MinHash(num_perm=self.num_perm, seed=1)  # fixed seed: signatures comparable across runs
        for s in shingles(text, self.k):
            m.update(s)
        return m

    def check_and_add(self, example: dict) -> Decision:
        eid = example.get("example_id") or ""
        if self.exact and example.get("audio"):
            h = bytes.fromhex(audio_hash(example))[:16]
            other = self.audio.get(h)
            if other is not None and other != eid:
                return Decision.reject("dedup", "duplicate_audio",
                                       f"example {eid}: same decoded audio as example {other}",
                                       {"dedup.exact": 1.0})
            self.audio[h] = eid
        if self.near:
            text = " ".join(t for t in (example.get("text_ch0"), example.get("text_ch1")) if t)
            if len(norm_text(text).split()) >= self.min_words:
                from datasketch import MinHashLSH
                if self.lsh is None:
                    self.lsh = MinHashLSH(threshold=self.jaccard, num_perm=self.num_perm)
                mh = self._minhash(text)
                hits = [h for h in self.lsh.query(mh) if h != eid]
                if hits:
                    j = max(mh.jaccard(self.sigs[h]) for h in hits)
                    if j >= self.jaccard:
                        best = max(hits, key=lambda h: mh.jaccard(self.sigs[h]))
                        return Decision.reject("dedup", "near_duplicate_text",
                                               f"example {eid}: transcript near-duplicate of example {best} "
                                               f"(estimated Jaccard {j:.2f} >= {self.jaccard})",
                                               {"dedup.jaccard": float(j)})
                if eid not in self.sigs:
                    self.lsh.insert(eid, mh)
                    self.sigs[eid] = mh
        return Decision.ok("dedup")

    def __len__(self) -> int:
        return max(len(self.audio), len(self.sigs))

    def save(self) -> None:
        """Atomically persist the index (temp file, fsync, rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump({"params": self.params, "audio": self.audio, "lsh": self.lsh, "sigs": self.sigs}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
