"""Voice bank per language and seeded casting: each speaker of a dialogue gets a distinct voice."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

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


def voice_bank(language: str, cfg: dict | None = None) -> list[str]:
    """Voice names for `language`: base voice x variant; config `synth.voices.bank` overrides."""
    bank = ((cfg or {}).get("voices") or {}).get("bank") or {}
    if language in bank:
        return list(bank[language])
    bases = BASE_VOICES.get(language, [language])
    return [f"{b}+{v}" for b in bases for v in LANGUAGE_VARIANTS.get(language, VARIANTS)]


def cast_voices(speakers: list[str], language: str, rng: np.random.Generator, cfg: dict | None = None,
                main_voice: dict | None = None) -> dict[str, Voice]:
    """Distinct voices for `speakers` (main first): different name, pitch and rate for each.

    `cfg` is the `synth` section (voices.pitch, voices.rate ranges, voices.min_pitch_step);
    `main_voice` ({name, pitch, rate}) pins the main speaker's voice on channel 0.
    """
    vc = (cfg or {}).get("voices") or {}
    p_lo, p_hi = vc.get("pitch", [30, 75])
    r_lo, r_hi = vc.get("rate", [145, 195])
    step = int(vc.get("min_pitch_step", 8))
    bank = voice_bank(language, cfg)
    out: dict[str, Voice] = {}
    used_names: set[str] = set()
    used_pitch: list[int] = []
    used_rate: list[int] = []
    for i, spk in enumerate(speakers):
        if i == 0 and main_voice:
            v = Voice(main_voice["name"], int(main_voice.get("pitch", 50)), int(main_voice.get("rate", 175)))
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
