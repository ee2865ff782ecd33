"""Checks of synthetic word spans against their channel's audio (bench/synth_words.py uses them).

`SphinxAligner`: an independent English forced aligner (PocketSphinx 5.1, its packaged en-us
acoustic model and CMU dictionary; `pip install -e '.[bench]'`). `coverage`: a language-independent
check of word spans against the channel's voice activity and sound.
"""

from __future__ import annotations

import re

import numpy as np

STEP_S = 0.01
# PocketSphinx has no grapheme-to-phoneme model: a word outside its dictionary is given one phone per
# letter so that it absorbs its sound; its own span is not scored (the alignment of the words around
# it stands, since the aligner puts the mismatch in optional silence or inside that word).
_LETTER_PHONES = {"a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH", "i": "IH",
                  "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P", "q": "K", "r": "R",
                  "s": "S", "t": "T", "u": "AH", "v": "V", "w": "W", "x": "K S", "y": "Y", "z": "Z"}
CUT_S = 0.3  # a channel is aligned in pieces split at silences this long
PAD_S = 0.5  # and padded with this much silence (not the neighbours' sound)
DITHER = 3e-4  # white noise under the channel: exact digital silence between placements derails the
# aligner's live cepstral mean (whole sentences came back as silence)


class SphinxAligner:
    """Word times of a known English script on 16 kHz audio by PocketSphinx forced alignment."""

    def __init__(self):
        try:
            import pocketsphinx
        except ImportError:
            raise SystemExit("--reference pocketsphinx needs the bench extra: pip install -e '.[bench]'") from None
        self.decoder = pocketsphinx.Decoder(samprate=16000, lm=None, loglevel="FATAL")
        self.frate = int(self.decoder.config["frate"])
        self._oov: dict[str, str] = {}

    def _tokens(self, words: list[dict]) -> tuple[list[str], list[int], set[int]]:
        """Dictionary tokens of the script, the script word each belongs to, and the words outside
        the dictionary (their letter pronunciations added under unique names)."""
        toks, owner, oov = [], [], set()
        for i, w in enumerate(words):
            whole = re.sub(r"[^a-z'-]", "", w["word"].lower()).strip("'-")
            parts = [p.strip("'") for p in re.split(r"-", whole) if p.strip("'")]
            if whole and self.decoder.lookup_word(whole):
                parts = [whole]
            elif not parts or not all(self.decoder.lookup_word(p) for p in parts):
                oov.add(i)
                letters = re.sub(r"[^a-z]", "", whole)
                phones = []
                for c in letters:  # a doubled letter is one sound
                    if not phones or phones[-1][0] != c:
                        phones.append((c, _LETTER_PHONES[c]))
                if not phones:
                    continue  # no letter at all: nothing to say, nothing to align
                pron = " ".join(p for _, p in phones)
                if pron not in self._oov:
                    name = f"xoov{len(self._oov)}"
                    self.decoder.add_word(name, pron, True)
                    self._oov[pron] = name
                parts = [self._oov[pron]]
            toks.extend(parts)
            owner.extend([i] * len(parts))
        return toks, owner, oov

    def align_piece(self, words: list[dict], x16: np.ndarray, offset_s: float = 0.0) -> tuple[list[dict | None], set[int]]:
        """(per script word: {start_s, end_s} (+ `offset_s`) or None, words outside the dictionary).
        A failed alignment (the aligner's best path does not end with the script) gives all None."""
        toks, owner, oov = self._tokens(words)
        out: list[dict | None] = [None] * len(words)
        if not toks:
            return out, oov
        x = x16.astype(np.float32) + np.random.default_rng(0).normal(0, DITHER, len(x16)).astype(np.float32)
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
        d = self.decoder
        d.set_align_text(" ".join(toks))
        d.start_utt()
        d.process_raw(pcm.tobytes(), full_utt=True)
        d.end_utt()
        segs = [s for s in (d.seg() or []) if not s.word.startswith(("<", "[", "+"))]
        if [re.sub(r"\(\d+\)$", "", s.word) for s in segs] != toks:
            return out, oov
        for s, i in zip(segs, owner):
            a, b = offset_s + s.start_frame / self.frate, offset_s + (s.end_frame + 1) / self.frate
            if out[i] is None:
                out[i] = {"start_s": a, "end_s": b}
            else:
                out[i]["end_s"] = b
        return out, oov

    def align(self, words: list[dict], x16: np.ndarray, sound: list) -> tuple[list[dict | None], set[int], int, int]:
        """A whole channel, cut into pieces at the silences (>= CUT_S) of its `sound` (one alignment of
        a minute of audio fails as a whole on one bad stretch): each word goes to the piece that
        holds its midpoint (the nearest piece when it lies in a silence); each piece is aligned
        alone, between PAD_S of silence. (word times as `align_piece`, words outside the
        dictionary, pieces, failed pieces)."""
        pieces: list[list[float]] = []
        for a, b in sound:
            if pieces and a - pieces[-1][1] < CUT_S:
                pieces[-1][1] = b
            else:
                pieces.append([a, b])
        out: list[dict | None] = [None] * len(words)
        oov: set[int] = set()
        if not pieces:
            return out, oov, 0, 0
        mids = np.array([(p[0] + p[1]) / 2 for p in pieces])
        member: dict[int, list[int]] = {}
        for i, w in enumerate(words):
            m = (float(w["start_s"]) + float(w["end_s"])) / 2
            k = next((k for k, p in enumerate(pieces) if p[0] - CUT_S / 2 <= m <= p[1] + CUT_S / 2), None)
            member.setdefault(int(np.argmin(np.abs(mids - m))) if k is None else k, []).append(i)
        failed = 0
        for k, idx in member.items():
            a, b = int(pieces[k][0] * 16000), int(pieces[k][1] * 16000)
            pad = np.zeros(int(PAD_S * 16000), np.float32)
            got, bad = self.align_piece([words[i] for i in idx], np.concatenate([pad, x16[a:b], pad]),
                                        pieces[k][0] - PAD_S)
            failed += all(g is None for g in got) and len(bad) < len(idx)
            oov |= {idx[j] for j in bad}
            for j, g in enumerate(got):
                out[idx[j]] = g
        return out, oov, len(member), failed


def _mask(spans, n: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for s, e in spans:
        m[max(0, round(float(s) / STEP_S)): max(0, round(float(e) / STEP_S))] = True
    return m


def edge_errors(spans: list[tuple[float, float]], act: np.ndarray, dur_s: float,
                free_s: float) -> tuple[list[float], list[float]]:
    """Start and end errors (s) of word spans against activity mask `act`, at each edge that borders
    `free_s` or more without another word: the activity run that meets the span, followed outward
    until it stops or reaches the neighbouring word. Start error = span start minus the run's
    start (> 0: sound before the span), end error = the run's end minus span end (> 0: sound after
    it); an edge with no activity inside its span is skipped."""
    starts, ends = [], []
    for k, (s, e) in enumerate(spans):
        prev_end = spans[k - 1][1] if k else 0.0
        next_start = spans[k + 1][0] if k + 1 < len(spans) else dur_s
        a, b = round(s / STEP_S), max(round(e / STEP_S), round(s / STEP_S) + 1)
        inside = np.flatnonzero(act[a:b])
        if not len(inside):
            continue
        if s - prev_end >= free_s:
            j, lo = a + inside[0], round(prev_end / STEP_S)
            while j > lo and act[j - 1]:
                j -= 1
            starts.append(s - j * STEP_S)
        if next_start - e >= free_s:
            j, hi = a + inside[-1] + 1, min(len(act), round(next_start / STEP_S))
            while j < hi and act[j]:
                j += 1
            ends.append(j * STEP_S - e)
    return starts, ends


def coverage(words: list[dict], vad: list, sound: list, labels: list, dur_s: float, tol_s: float = 0.05,
             free_s: float = 0.1) -> dict:
    """How one channel's word spans sit on its audio (10 ms frames).

    Seconds: `vad_s` voice activity (silero), `vad_outside_s` of it outside every word span and
    labelled span, `sound_s` / `sound_outside_s` the same for the channel's sound (frames within
    50 dB of its loudest, exact on a clean channel), `word_s` / `word_silent_s` word-span time and
    the part of it with no voice activity. Word edges (edge_errors) against the voice activity
    (`vad_start_s`, `vad_end_s`) and the sound (`sound_start_s`, `sound_end_s`), and `uncovered`:
    edges whose sound passes the span by more than `tol_s`."""
    n = int(np.ceil(dur_s / STEP_S)) + 1
    w = _mask([(x["start_s"], x["end_s"]) for x in words], n)
    lab = _mask(labels, n)
    va, so = _mask(vad, n), _mask(sound, n)
    spans = sorted((float(x["start_s"]), float(x["end_s"])) for x in words)
    vs, ve = edge_errors(spans, va, dur_s, free_s)
    ss, se = edge_errors(spans, so, dur_s, free_s)
    return {"vad_s": va.sum() * STEP_S, "vad_outside_s": (va & ~w & ~lab).sum() * STEP_S,
            "sound_s": so.sum() * STEP_S, "sound_outside_s": (so & ~w & ~lab).sum() * STEP_S,
            "word_s": w.sum() * STEP_S, "word_silent_s": (w & ~va).sum() * STEP_S,
            "vad_start_s": vs, "vad_end_s": ve, "sound_start_s": ss, "sound_end_s": se,
            "edges": len(ss) + len(se), "uncovered": int(sum(x > tol_s for x in ss + se))}
