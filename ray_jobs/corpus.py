"""Small corpora the demo builds on the fly: espeak conversations with known turn times, two-channel
splits, files in many formats, and broken files that ingest must reject. Deterministic given a seed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

# espeak voice variant and pitch per speaker slot: distinct enough for a speaker encoder
VOICES = [("m3", 30), ("f2", 75), ("m7", 55), ("f4", 90)]

def make_conversation(turns: list[tuple[str, str]], language: str = "en", sample_rate: int = 24000,
                      seed: int = 0, gap_s: float = 0.4, lead_s: float = 0.5,
                      voices: dict[str, tuple[str, int]] | None = None, voice_language: str | None = None
                      ) -> tuple[np.ndarray, list[dict], list[dict]]:
    """Speak `turns` [(speaker, text)] one after another with espeak voices, one voice per speaker.

    `voice_language` picks another espeak voice of the language (e.g. "pt-br" for "pt").

    Gaps between turns are `gap_s` plus a seeded jitter of up to 0.2 s. Returns the mono mix,
    the reference turns [{speaker, start_s, end_s}] and words [{speaker, word, start_s, end_s}].
    """
    from synth.tts.espeak import EspeakTTS
    tts = EspeakTTS(sample_rate=sample_rate)
    rng = np.random.default_rng(seed)
    order = list(dict.fromkeys(s for s, _ in turns))
    voices = voices or {s: VOICES[i % len(VOICES)] for i, s in enumerate(order)}
    pieces = [np.zeros(int(lead_s * sample_rate), np.float32)]
    t = lead_s
    ref, words = [], []
    for spk, text in turns:
        variant, pitch = voices[spk]
        a, sr, ws = tts.synthesize(text, language, voice=f"{voice_language or language}+{variant}", pitch=pitch, rate=165)
        # trim espeak's leading/trailing silence so the turn times are the speech times
        nz = np.flatnonzero(np.abs(a) > 1e-3)
        a0, a1 = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, len(a))
        a = a[a0:a1]
        off = t - a0 / sr
        pieces.append(a.astype(np.float32))
        ref.append({"speaker": spk, "start_s": t, "end_s": t + len(a) / sr})
        for w in ws:
            words.append({"speaker": spk, "word": w["word"], "start_s": max(t, w["start_s"] + off),
                          "end_s": min(t + len(a) / sr, w["end_s"] + off)})
        t += len(a) / sr
        g = gap_s + float(rng.uniform(0, 0.2))
        pieces.append(np.zeros(int(g * sample_rate), np.float32))
        t += int(g * sample_rate) / sample_rate
    audio = np.concatenate(pieces)
    return audio * 0.8 / max(1e-6, float(np.abs(audio).max())), ref, words


EN_TURNS_2 = [
    ("A", "Good morning, did you see the weather report for today?"),
    ("B", "Yes, they said it would rain all afternoon in the city."),
    ("A", "Then I will take the train instead of walking to work."),
    ("B", "That sounds wise. I might stay at home and read a book."),
    ("A", "Which book are you reading at the moment?"),
    ("B", "A long novel about sailors crossing the ocean."),
]

EN_TURNS_3 = [
    ("A", "Welcome everyone, let us start the meeting about the new garden."),
    ("B", "Thank you. I think we should plant apple trees near the fence."),
    ("C", "Apple trees need a lot of water during the summer months."),
    ("A", "Good point. What would you suggest instead of apples?"),
    ("C", "Perhaps some berries, they are easy to grow and very sweet."),
    ("B", "Berries are fine with me, as long as the children can pick them."),
    ("A", "Then we agree on berries and we will order them next week."),
]


def two_channel(audio: np.ndarray, ref: list[dict], sample_rate: int, main: str) -> np.ndarray:
    """Split a mono conversation into [T, 2]: `main`'s turns on channel 0, the rest on channel 1."""
    out = np.zeros((len(audio), 2), np.float32)
    for t in ref:
        a, b = int(t["start_s"] * sample_rate), int(t["end_s"] * sample_rate)
        out[a:b, 0 if t["speaker"] == main else 1] = audio[a:b]
    return out


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write audio in the format its suffix names (soundfile, else ffmpeg for mp3/m4a)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suf = p.suffix.lower()
    if suf in (".wav", ".flac", ".ogg", ".opus"):
        kw = {".ogg": {"format": "OGG", "subtype": "VORBIS"}, ".opus": {"format": "OGG", "subtype": "OPUS"}}
        sf.write(str(p), audio, sample_rate, **kw.get(suf, {}))
        return p
    tmp = p.with_suffix(".tmp.wav")
    sf.write(str(tmp), audio, sample_rate)
    try:
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp), str(p)], check=True)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def write_broken_files(directory: str | Path, sample_rate: int = 24000) -> dict[str, str]:
    """Files the ingest stage must reject; name -> expected rejection reason."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(np.arange(sample_rate * 2) * 2 * np.pi * 220 / sample_rate)).astype(np.float32)
    good = d / "_good.wav"
    sf.write(str(good), tone, sample_rate)
    raw = good.read_bytes()
    good.unlink()
    (d / "truncated_header.wav").write_bytes(raw[:30])
    (d / "random_bytes.wav").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "empty.wav").write_bytes(b"")
    sf.write(str(d / "too_short.wav"), tone[: sample_rate // 10], sample_rate)
    (d / "text.mp3").write_text("this is not audio at all\n" * 20)
    sf.write(str(d / "zero_frames.flac"), np.zeros((0, 1), np.float32), sample_rate)
    return {
        "truncated_header.wav": "decode_error",
        "random_bytes.wav": "decode_error",
        "empty.wav": "empty",
        "too_short.wav": "too_short",
        "text.mp3": "decode_error",
        "zero_frames.flac": "empty",
    }
