"""Kyutai Pocket TTS (`pocket-tts`): neural speech for en fr de es it pt, each speaker's voice
cloned from a reference clip.

Models load through the package's own loader (`TTSModel.load_model`), one per language, once per
actor, from synth.tts.pocket.models: per language a Pocket TTS config YAML (a copy of the
package's, its `weights_path` pointing at local safetensors) or the name of a packaged config
("french", "german_24l", ...) whose hf:// weights must already be in the Hugging Face cache.
A weight file that is not there is a ModelMissing naming the file and the key, before any load.

A voice is the path of a reference clip; its prompt state (`get_state_for_audio_prompt`, the
voice-cloning path) is computed once per clip. Every call seeds torch from (language, clip,
text), so the same dialogue gives the same bytes in any order. Pocket TTS gives no word times:
they come from the WordTimer (forced alignment of the script).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from synth.tts.base import TTSError, WordTimer

POCKET_SR = 24000
_WEIGHT_KEYS = ("weights_path", "weights_path_without_voice_cloning", "flow_lm.weights_path", "mimi.weights_path",
                "flow_lm.lookup_table.tokenizer_path")


def _config_path(ref: str) -> Path:
    """A config YAML path for `ref` (a path, or the name of a config the package ships)."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        return p
    from pocket_tts.utils.config import CONFIGS_DIR
    return CONFIGS_DIR / f"{ref}.yaml"


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def _present(ref: str) -> bool:
    """A local file that exists, or an hf:// file already in the Hugging Face cache."""
    if ref.startswith("hf://"):
        from huggingface_hub import try_to_load_from_cache
        parts = ref.removeprefix("hf://").split("/")
        filename = "/".join(parts[2:])
        filename, _, revision = filename.partition("@")
        hit = try_to_load_from_cache("/".join(parts[:2]), filename, revision=revision or None)
        return isinstance(hit, str)
    if ref.startswith(("http://", "https://")):
        return False
    return Path(ref).is_file()


def check_pocket(models: dict, languages: list[str] | None = None, allow_random: bool = False) -> None:
    """ModelMissing (naming the file and config key) for a language without a usable model."""
    import yaml
    from pipelines.models.registry import ModelMissing
    for lang in languages or list(models):
        if lang not in models:
            raise ModelMissing(f"synth.tts.pocket.models has no model for {lang!r}: set it to a Pocket TTS config "
                               f"YAML with local weights (or a packaged config name whose weights are cached)")
        cfg_path = _config_path(str(models[lang]))
        if not cfg_path.is_file():
            raise ModelMissing(f"Pocket TTS config for {lang!r} not found: {cfg_path}")
        conf = yaml.safe_load(cfg_path.read_text()) or {}
        refs = {k: _get(conf, k) for k in _WEIGHT_KEYS}
        if not allow_random and not (refs["weights_path"] or refs["flow_lm.weights_path"]):
            raise ModelMissing(f"Pocket TTS config {cfg_path} ({lang}) names no weights (weights_path is null)")
        for key, ref in refs.items():
            if ref is None:
                continue
            if key == "weights_path_without_voice_cloning":
                continue  # a fallback the loader tries only when weights_path fails
            if not _present(str(ref)):
                raise ModelMissing(f"Pocket TTS {key} for {lang!r} is missing: {ref} (config {cfg_path}); download "
                                   "it beside the config and point the key at the local file")


class PocketTTS:
    """Pocket TTS models per language; `voice` is the reference clip to clone."""

    name = "pocket"
    voice_kind = "clip"

    def __init__(self, sample_rate: int = 24000, models: dict | None = None, timer: WordTimer | None = None,
                 threads: int = 2, max_tokens: int = 50, temperature: float = 0.3, allow_random: bool = False):
        import torch
        from pocket_tts import TTSModel
        self.sample_rate = int(sample_rate)
        self.timer = timer or WordTimer(None)
        self.max_tokens = int(max_tokens)
        models = dict(models or {})
        check_pocket(models, allow_random=allow_random)
        torch.set_num_threads(threads)
        self.models = {lang: TTSModel.load_model(config=str(_config_path(str(ref))), temp=float(temperature))
                       for lang, ref in models.items()}
        for lang, m in self.models.items():
            if int(m.sample_rate) != POCKET_SR:
                raise TTSError(f"pocket: model for {lang} runs at {m.sample_rate} Hz, expected {POCKET_SR}")
        self._states: dict[tuple[str, str], object] = {}
        langs = sorted(self.models)
        self.word_times = self.timer.method(langs[0]) if langs else "forced-alignment"

    def session(self, seed: int = 0):
        """Every call is seeded on its own (from language, clip and text); nothing to reset."""
        import contextlib
        return contextlib.nullcontext(self)

    def _model(self, language: str):
        if language not in self.models:
            raise TTSError(f"pocket: no model for language {language!r} (have {sorted(self.models)}); "
                           "set synth.tts.pocket.models")
        return self.models[language]

    def voice_state(self, language: str, voice: str):
        """The prompt state of reference clip `voice` (computed once per clip and language)."""
        key = (language, voice)
        if key not in self._states:
            if not Path(voice).is_file():
                raise TTSError(f"pocket: reference clip {voice} not found (synth.voices.bank.{language})")
            import torch
            torch.manual_seed(_seed(language, voice, ""))
            self._states[key] = self._model(language).get_state_for_audio_prompt(Path(voice))
        return self._states[key]

    def stream(self, text: str, language: str, voice: str) -> Iterator[np.ndarray]:
        """Audio chunks (float32, 24 kHz) as the model makes them."""
        import torch
        text = (text or "").strip()
        if not text:
            raise TTSError("pocket: empty text")
        model = self._model(language)
        state = self.voice_state(language, voice)
        torch.manual_seed(_seed(language, voice, text))
        for chunk in model.generate_audio_stream(state, text, max_tokens=self.max_tokens, copy_state=True):
            yield chunk.detach().cpu().numpy().astype(np.float32).reshape(-1)

    def synthesize(self, text: str, language: str, voice: str | None = None, pitch: int | None = None,
                   rate: int | None = None) -> tuple[np.ndarray, int, list[dict]]:
        """Speak `text` in the cloned `voice` (pitch and rate belong to the clip, not set here)."""
        if not voice:
            raise TTSError("pocket: a voice (reference clip) is needed; set synth.voices.bank")
        chunks = list(self.stream(text, language, voice))
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        if self.sample_rate != POCKET_SR:
            import soxr
            audio = soxr.resample(audio, POCKET_SR, self.sample_rate).astype(np.float32)
        words = self.timer.words(text.strip(), audio, self.sample_rate, language)
        return audio, self.sample_rate, words


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "little") & (2**63 - 1)
