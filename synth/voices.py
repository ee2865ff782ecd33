"""Voice bank per language and seeded casting: each speaker of a dialogue gets a distinct voice."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from synth.params import MainVoice, VoicesParams

# espeak-ng base voices per language (regional accents add variety) and voice variants.
BASE_VOICES: dict[str, list[str]] = {
    "en": ["en-us", "en", "en-gb-x-rp"],
    "fr": ["fr", "fr-be"],
    "de": ["de"],
    "es": ["es", "es-419"],
    "it": ["it"],
    "pt": ["pt-br", "pt"],
}
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]
# Whisper base misreads some variants badly (CER on three sentences, measured with
# /tmp bench of bench/synth.py --voices): fr female f3/f5 0.59-0.69 vs m3 0.17, so French and
# Portuguese keep the variants it understands.
LANGUAGE_VARIANTS: dict[str, list[str]] = {
    "fr": ["m1", "m2", "m3", "m4", "f1"],
    "pt": ["m1", "m2", "m3", "m4", "f1"],
}


@dataclass(frozen=True)
class Voice:
    """One cast voice: espeak voice name ("fr+m3"), pitch 0-100, rate in words per minute."""

    name: str
    pitch: int
    rate: int

    def as_dict(self) -> dict:
        return asdict(self)


AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3")


def voice_bank(language: str, vp: VoicesParams, kind: str = "espeak",
               engine_voices: list[str] | None = None) -> list[str]:
    """Voice names for `language` from `vp` (the typed `synth.voices` section).

    kind "espeak": `bank[language]` or base voice x variant. kind "clip" (voice cloning): reference
    clips, `bank[language]` being a list of audio files or a directory of them (a speaker per
    clip, e.g. one per speaker `tandem curate` found). kind "engine": the engine's own voices
    (`engine_voices`), which a bank entry may narrow.
    """
    entry = vp.bank.get(language)
    if kind == "espeak":
        if entry:
            return list(entry)
        bases = BASE_VOICES.get(language, [language])
        return [f"{b}+{v}" for b in bases for v in LANGUAGE_VARIANTS.get(language, VARIANTS)]
    if kind == "engine":
        return list(entry or engine_voices or [])
    if kind != "clip":
        raise ValueError(f"voice kind {kind!r}: expected espeak, clip or engine")
    if entry is None:
        raise ValueError(f"synth.voices.bank.{language}: a voice-cloning TTS needs reference clips for "
                         f"{language!r} (a directory or a list of audio files)")
    if isinstance(entry, str):
        d = Path(entry)
        if not d.is_dir():
            raise ValueError(f"synth.voices.bank.{language}: {entry} is not a directory of reference clips")
        clips = sorted(str(p) for p in d.iterdir() if p.suffix.lower() in AUDIO_EXT)
        if not clips:
            raise ValueError(f"synth.voices.bank.{language}: no audio files ({', '.join(AUDIO_EXT)}) in {entry}")
        return clips
    return [str(x) for x in entry]


def cast_voices(speakers: list[str], language: str, rng: np.random.Generator, vp: VoicesParams,
                main_voice: MainVoice | None = None, kind: str = "espeak",
                engine_voices: list[str] | None = None) -> dict[str, Voice]:
    """Distinct voices for `speakers` (main first): different name, pitch and rate for each while
    the bank has names left (a bank of one voice gives every speaker that voice).

    `vp` is the typed `synth.voices` section (pitch, rate ranges, min_pitch_step, bank);
    `main_voice` pins the main speaker's voice across dialogues.
    """
    p_lo, p_hi = vp.pitch
    r_lo, r_hi = vp.rate
    step = vp.min_pitch_step
    bank = voice_bank(language, vp, kind, engine_voices)
    if not bank:
        raise ValueError(f"no voices for language {language!r}")
    out: dict[str, Voice] = {}
    used_names: set[str] = set()
    used_pitch: list[int] = []
    used_rate: list[int] = []
    for i, spk in enumerate(speakers):
        if i == 0 and main_voice:
            v = Voice(main_voice.name, main_voice.pitch, main_voice.rate)
        else:
            free = [n for n in bank if n not in used_names] or bank
            name = free[int(rng.integers(len(free)))]
            # redraw a few times so pitch and rate differ from every voice already cast
            for _ in range(32):
                pitch = int(rng.integers(p_lo, p_hi + 1))
                rate = int(rng.integers(r_lo, r_hi + 1))
                if all(abs(pitch - p) >= step for p in used_pitch) and rate not in used_rate:
                    break
            v = Voice(name, pitch, rate)
        out[spk] = v
        used_names.add(v.name)
        used_pitch.append(v.pitch)
        used_rate.append(v.rate)
    return out
