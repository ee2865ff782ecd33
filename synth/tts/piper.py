"""Piper neural TTS (piper-tts); word times by aligning the script to ASR word times."""

from __future__ import annotations

import numpy as np
from tandem.synth.tts.base import TTSError, align_words


class PiperTTS:
    """Piper neural TTS; word times from forced alignment with the curation ASR."""

    name = "piper"

    def __init__(self, sample_rate: int = 24000, voice_path: str | None = None, languages: tuple = ("en",),
                 asr=None, cfg: dict | None = None):
        self.sample_rate = int(sample_rate)
        self.voice_path = voice_path
        self.languages = tuple(languages)
        self._asr = asr
        self._cfg = cfg or {}
        self._voice = None

    def _load(self):
        if self._voice is None:
            from piper import PiperVoice
            if self.voice_path is None:
                from tandem.pipelines.models.registry import piper_voice_path
                self.voice_path = str(piper_voice_path())
            self._voice = PiperVoice.load(self.voice_path)
        return self._voice

    def session(self):
        """Piper is deterministic per call; nothing to isolate."""
        import contextlib
        return contextlib.nullcontext(self)

    def _aligner(self):
        if self._asr is None:
            from tandem.pipelines.models.asr import load_asr
            self._asr = load_asr(self._cfg, device="cpu", threads=int(self._cfg.get("threads", 2)))
        return self._asr

    def synthesize(self, text: str, language: str, voice: str | None = None, pitch: int | None = None,
                   rate: int | None = None) -> tuple[np.ndarray, int, list[dict]]:
        """Speak `text` in `language` (the voice must cover it); `rate` scales speed (wpm / 175)."""
        if language not in self.languages:
            raise TTSError(f"piper: no voice for language {language!r} (voice {self.voice_path or 'default'} "
                           f"speaks {', '.join(self.languages)}); use the espeak backend or set synth.piper.voice")
        text = (text or "").strip()
        if not text:
            raise TTSError("piper: empty text")
        pv = self._load()
        from piper import SynthesisConfig
        syn = SynthesisConfig(length_scale=(175.0 / rate) if rate else None)
        chunks = [c.audio_float_array for c in pv.synthesize(text, syn_config=syn)]
        audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        sr = pv.config.sample_rate
        if sr != self.sample_rate:
            import soxr
            audio = soxr.resample(audio, sr, self.sample_rate).astype(np.float32)
        words = align_words(text, audio, self.sample_rate, language, self._aligner())
        return audio, self.sample_rate, words
