"""A voice bank from real speakers: one reference clip per speaker of curated examples, for a voice-
cloning TTS (synth.voices.bank.<language> = the directory written here).

`write_voice_bank(rows, dest)` takes example rows (as `tandem curate` commits them: audio FLAC,
words with speaker and channel, language) and writes dest/<language>/<example>-<speaker>.wav: the
longest stretch where that speaker talks alone (no other speaker's word within `guard_s`), cut
to `max_s`, from the speaker's channel. Speaker labels are per recording, so a person who
appears in several recordings gives several clips. The caller chooses the rows (e.g. accepted
real examples from the catalog) and streams them; one row's audio is in memory at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

CLIP_SR = 24000


def solo_stretches(words: list[dict], speaker: str, guard_s: float, join_s: float) -> list[tuple[float, float]]:
    """Where `speaker` talks alone: its words joined over silences up to `join_s`, minus every
    other speaker's words widened by `guard_s` (a backchannel cuts a stretch in two)."""
    spans: list[list[float]] = []
    for s, e in sorted((w["start_s"], w["end_s"]) for w in words if w["speaker"] == speaker):
        if spans and s - spans[-1][1] <= join_s:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([s, e])
    others = sorted((w["start_s"] - guard_s, w["end_s"] + guard_s) for w in words if w["speaker"] != speaker)
    out: list[tuple[float, float]] = []
    for s, e in spans:
        pieces = [(s, e)]
        for a, b in others:
            pieces = [q for p0, p1 in pieces for q in ((p0, min(p1, a)), (max(p0, b), p1)) if q[1] > q[0]]
        out += pieces
    return out


def write_voice_bank(rows: Iterable[dict], dest: str | Path, min_s: float = 3.0, max_s: float = 10.0,
                     guard_s: float = 0.3, join_s: float = 0.6, per_language: int = 200) -> dict[str, list[str]]:
    """Write a clip per speaker of each row; returns {language: [clip paths]}."""
    import soundfile as sf
    import soxr
    from pipelines.core.ids import checked_id, checked_language
    from pipelines.io.audio import decode_flac
    dest = Path(dest)
    out: dict[str, list[str]] = {}
    for r in rows:
        lang = r["language"]
        if len(out.get(lang, [])) >= per_language:
            continue
        words = list(r["words"] or [])
        audio = None
        for spk in dict.fromkeys(w["speaker"] for w in words):
            spans = [(s, e) for s, e in solo_stretches(words, spk, guard_s, join_s) if e - s >= min_s]
            if not spans:
                continue
            s, e = max(spans, key=lambda x: x[1] - x[0])
            e = min(e, s + max_s)
            if audio is None:
                audio, sr = decode_flac(r["audio"])
            ch = next(int(w["channel"]) for w in words if w["speaker"] == spk)
            x = audio[min(ch, audio.shape[0] - 1), int(s * sr): int(e * sr)].astype(np.float32)
            if sr != CLIP_SR:
                x = soxr.resample(x, sr, CLIP_SR).astype(np.float32)
            peak = float(np.abs(x).max()) if x.size else 0.0
            if peak <= 1e-4:
                continue  # a silent channel: its words are wrong, not a voice
            # names read from shards: checked before they become a path (a `../` could leave dest)
            d = dest / checked_language(lang, "voice bank")
            d.mkdir(parents=True, exist_ok=True)
            p = d / f"{checked_id(r['example_id'], 'voice bank')}-{_safe(spk)}.wav"
            sf.write(p, x * min(1.0, 0.9 / peak), CLIP_SR, subtype="PCM_16")
            out.setdefault(lang, []).append(str(p))
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))[:64]
