"""Small inputs for filter tests and benchmarks: signals, espeak dialogues, example rows.

Every random draw takes an explicit seed. Speech comes from espeak-ng (`synth.tts.EspeakTTS`).
"""

from __future__ import annotations

import numpy as np

from pipelines.core.contracts import example_row, stable_hash
from pipelines.io.audio import encode_flac

SR = 24000

SENTENCES = {
    "en": ["Good morning, did you manage to finish the report for the meeting tomorrow?",
           "Yes, I sent it to the whole team last night, so everyone should have a copy."],
    "fr": ["Bonjour, est-ce que tu as pu terminer le rapport pour la réunion de demain?",
           "Oui, je l'ai envoyé à toute l'équipe hier soir, donc tout le monde l'a reçu."],
    "de": ["Guten Morgen, hast du den Bericht für die Besprechung morgen fertig bekommen?",
           "Ja, ich habe ihn gestern Abend an das ganze Team geschickt, alle haben ihn jetzt."],
    "es": ["Buenos días, ¿pudiste terminar el informe para la reunión de mañana?",
           "Sí, lo envié anoche a todo el equipo, así que todos deberían tener una copia."],
    "it": ["Buongiorno, sei riuscito a finire la relazione per la riunione di domani?",
           "Sì, l'ho mandata ieri sera a tutta la squadra, quindi tutti ne hanno una copia."],
    "pt": ["Bom dia, conseguiste terminar o relatório para a reunião de amanhã?",
           "Sim, enviei ontem à noite para toda a equipa, por isso todos devem ter uma cópia."],
    "nl": ["Goedemorgen, heb je het verslag voor de vergadering van morgen kunnen afmaken?",
           "Ja, ik heb het gisteravond naar het hele team gestuurd, dus iedereen heeft een kopie."],
    "pl": ["Dzień dobry, czy udało ci się skończyć raport na jutrzejsze spotkanie?",
           "Tak, wysłałem go wczoraj wieczorem do całego zespołu, więc każdy ma już kopię."],
}


def white_noise(duration_s: float, seed: int, level: float = 0.1, sr: int = SR) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(duration_s * sr)) * level).astype(np.float32)


def silence(duration_s: float, sr: int = SR) -> np.ndarray:
    return np.zeros(int(duration_s * sr), dtype=np.float32)


def chord(duration_s: float, sr: int = SR, root_hz: float = 220.0) -> np.ndarray:
    """A major triad with a few harmonics and a slow tremolo: sustained tonal music."""
    t = np.arange(int(duration_s * sr)) / sr
    x = np.zeros_like(t)
    for ratio in (1.0, 1.25, 1.5):
        for h, amp in ((1, 1.0), (2, 0.5), (3, 0.25)):
            x += amp * np.sin(2 * np.pi * root_hz * ratio * h * t)
    x *= 1 + 0.2 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def clip(x: np.ndarray, gain: float = 8.0) -> np.ndarray:
    """Overdrive then hard-clip at full scale."""
    return np.clip(x * gain, -1.0, 1.0).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    p = float(np.mean(x ** 2))
    n = np.random.default_rng(seed).standard_normal(len(x)) * np.sqrt(p / 10 ** (snr_db / 10))
    return (x + n).astype(np.float32)


def speak(text: str, language: str, voice: str | None = None, sr: int = SR) -> tuple[np.ndarray, list[dict]]:
    from synth.tts.espeak import EspeakTTS
    a, got_sr, words = EspeakTTS(sample_rate=sr).synthesize(text, language, voice=voice)
    assert got_sr == sr
    return a.astype(np.float32), words


def dialogue(language: str, texts: list[str] | None = None, gap_s: float = 0.3, sr: int = SR,
             voices: tuple[str | None, str | None] = (None, None)) -> tuple[np.ndarray, list[dict], list[str]]:
    """Two turns, channel 0 then channel 1: audio [2, T], words (with channel), text per channel."""
    texts = texts or SENTENCES[language]
    lead = int(0.2 * sr)
    parts, words, t = [], [], lead
    chan_text = ["", ""]
    for i, txt in enumerate(texts[:2]):
        a, ws = speak(txt, language, voices[i], sr)
        parts.append((i, t, a))
        for w in ws:
            words.append({"channel": i, "speaker": f"S{i}", "word": w["word"], "start_s": t / sr + w["start_s"],
                          "end_s": t / sr + w["end_s"], "score": 1.0, "overlap": False})
        chan_text[i] = (chan_text[i] + " " + txt).strip()
        t += len(a) + int(gap_s * sr)
    out = np.zeros((2, t + lead), dtype=np.float32)
    for ch, start, a in parts:
        out[ch, start:start + len(a)] = a
    return out, words, chan_text


def example(audio: np.ndarray, *, kind: str, language: str, words: list[dict] | None = None,
            text: tuple[str, str] = ("", ""), segments: list[dict] | None = None, sr: int = SR,
            example_id: str | None = None, roundtrip_cer: float = float("nan"), seed: int = 0,
            source_id: str | None = None, **extra) -> dict:
    """An example row (contracts.example_row) around two-channel (or mono -> ch0) audio."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = np.stack([a, np.zeros_like(a)])
    eid = example_id or stable_hash("test-example", kind, language, text, a.shape[1])
    return example_row(
        example_id=eid, kind=kind, language=language, duration_s=a.shape[1] / sr, sample_rate=sr,
        num_samples=a.shape[1], audio=encode_flac(a, sr), words=list(words or []),
        segments=list(segments or []), text_ch0=text[0], text_ch1=text[1], speakers=["S0", "S1"],
        num_speakers=2, roundtrip_cer=roundtrip_cer, seed=seed,
        source_ids=[source_id or f"src-{eid}"], source_spans=[], **extra)


def transcribe_like_curation(asr, audio: np.ndarray, sr: int = SR) -> tuple[list[dict], list[dict], list[str]]:
    """Segments, words and text per channel as the curation chain makes them (ASR per channel,
    language detected by Whisper)."""
    segments, words, texts = [], [], []
    for ch in range(audio.shape[0]):
        if np.max(np.abs(audio[ch])) < 1e-4:
            texts.append("")
            continue
        segs = asr.transcribe(audio[ch], sr, language=None)
        for s in segs:
            segments.append({k: s[k] for k in ("start_s", "end_s", "text", "language", "language_prob",
                                               "avg_logprob", "no_speech_prob", "compression_ratio")}
                            | {"channel": ch})
            words.extend({"channel": ch, "speaker": f"S{ch}", "word": w["word"], "start_s": w["start_s"],
                          "end_s": w["end_s"], "score": w["score"], "overlap": False} for w in s["words"])
        texts.append(" ".join(s["text"] for s in segs).strip())
    return segments, words, texts


def item(examples: list[dict], uri: str = "test://item", kind: str = "real") -> dict:
    """A work item as the runner hands it to the filter stage."""
    return {"uri": uri, "kind": kind, "work_key": stable_hash("wk", uri), "seed": 0, "status": "ok",
            "rejections": [], "timings": {}, "examples": list(examples),
            "source": {"source_id": (examples[0]["source_ids"] or [None])[0] if examples else None, "uri": uri}}
