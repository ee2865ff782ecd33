"""espeak-ng through ctypes.

`EspeakTTS` drives libespeak-ng (shipped by the PyPI package espeakng-loader) through ctypes:
word events give each word's start; its end is found from the audio energy before the next
word starts.
"""

from __future__ import annotations

import ctypes
import re
import threading

import numpy as np
from synth.tts.base import TTSError

ESPEAK_RATE = 22050
DEFAULT_RATE, DEFAULT_PITCH = 175, 50  # espeak-ng's own defaults (wpm, 0-100)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_EVENT_LIST_TERMINATED, _EVENT_WORD = 0, 1


class _EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # union {int number; const char *name; char string[8]}
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_EspeakEvent))

# One libespeak-ng per process: it keeps global state, so every call holds the lock.
_LOCK = threading.Lock()
_LIB = None
_CB_REF = None
_PCM: list[np.ndarray] = []
_EVENTS: list[tuple[int, int, int]] = []  # (text_position 1-based chars, length, audio ms)


def _on_audio(wav, numsamples, events):
    if numsamples > 0:
        _PCM.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
    i = 0
    while True:
        ev = events[i]
        if ev.type == _EVENT_LIST_TERMINATED:
            break
        if ev.type == _EVENT_WORD:
            _EVENTS.append((ev.text_position, ev.length, ev.audio_position))
        i += 1
    return 0


def _espeak():
    """Load and initialise libespeak-ng once per process; call with _LOCK held."""
    global _LIB, _CB_REF
    if _LIB is not None:
        return _LIB
    try:
        import espeakng_loader
    except ImportError:
        raise TTSError("espeak-ng is not installed: pip install espeakng-loader") from None
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 500, espeakng_loader.get_data_path().encode(), 0)
    if sr <= 0:
        raise TTSError(f"espeak_Initialize failed ({sr}) with data at {espeakng_loader.get_data_path()}")
    if sr != ESPEAK_RATE:
        raise TTSError(f"espeak-ng reports {sr} Hz output, expected {ESPEAK_RATE}")
    _CB_REF = _CALLBACK(_on_audio)  # keep a reference: ctypes frees callbacks that are collected
    lib.espeak_SetSynthCallback(_CB_REF)
    _LIB = lib
    return lib


# Interjections espeak-ng reads as letters or as an abbreviation (fr "mm" -> "millimètre", es "mm" ->
# "eme eme", pt "é" -> "e agudo", en "mm-hmm" -> "em em hum"): the engine is given a spelling it
# says as the sound; the word keeps the script's spelling. Piper phonemizes with espeak-ng, so it
# speaks them the same way.
SAY_AS: dict[str, dict[str, str]] = {
    "en": {"mm-hmm": "um-hum"},
    "fr": {"mm": "heum"},
    "de": {"mhm": "hm-hm", "hmm": "hm"},
    "es": {"mm": "hum", "hmm": "hum"},
    "it": {"mm": "hum"},
    "pt": {"é": "éh", "hmm": "hum"},
}


def say_as(text: str, language: str) -> str:
    """`text` with each SAY_AS word of `language` respelled (case-insensitive, its punctuation kept);
    the whitespace tokens stay one for one."""
    table = SAY_AS.get(language.split("-")[0], {})
    if not table:
        return text

    def one(m: re.Match) -> str:
        lead, core, tail = m.group(1), m.group(2), m.group(3)
        return lead + table.get(core.lower(), core) + tail
    return re.sub(r"(?<!\S)([^\w\s]*)([\w'-]*\w)([^\w\s]*)(?!\S)", one, text)


def phonemes(text: str, voice: str) -> str:
    """What espeak-ng will say for `text` in `voice`, as IPA (clauses joined by " | ")."""
    with _LOCK:
        lib = _espeak()
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise TTSError(f"espeak: no voice {voice!r}")
        p, out = ctypes.c_char_p(text.encode()), []
        while p.value:
            out.append(lib.espeak_TextToPhonemes(ctypes.byref(p), _CHARS_UTF8, 2).decode())  # 2: IPA
    return " | ".join(out)


def word_ends(audio: np.ndarray, sr: int, starts: list[float], frame_s: float = 0.01,
              floor_db: float = -55.0) -> list[float]:
    """End of each word: the last frame above an energy floor before the next word's start.

    The floor is relative to the loudest frame of the utterance, so it adapts to voice and gain;
    -55 dB, 5 dB under the floor synth/audiotiming.py measures sound with (breathy tails hover near
    it): at -35 dB word ends fell short of the sound (IPU ends 29 ms early on average, 130 ms at the
    95th percentile; the +f2 variants' breathy tails) and the VAD heard the rest as speech no word
    accounted for.
    """
    n = max(1, round(frame_s * sr))
    frames = len(audio) // n
    if frames == 0:
        return [s for s in starts]
    e = (audio[: frames * n].astype(np.float64).reshape(frames, n) ** 2).mean(axis=1)
    db = 10 * np.log10(e + 1e-12)
    loud = db > (db.max() + floor_db)
    total = len(audio) / sr
    ends = []
    for i, s in enumerate(starts):
        nxt = starts[i + 1] if i + 1 < len(starts) else total
        a, b = int(s / frame_s), min(frames, int(np.ceil(nxt / frame_s)))
        idx = np.flatnonzero(loud[a:b])
        end = (a + idx[-1] + 1) * frame_s if len(idx) else min(nxt, s + frame_s)
        ends.append(float(min(max(end, s + frame_s), max(nxt, s + frame_s), total)))
    return ends


def raw_synth(text: str, name: str, pitch: int | None, rate: int | None) -> tuple[np.ndarray, list, str | None]:
    """One espeak call in this process: (int16 PCM at 22,050 Hz, word events, error or None)."""
    data = text.encode("utf-8") + b"\0"
    with _LOCK:
        lib = _espeak()
        if lib.espeak_SetVoiceByName(name.encode()) != 0:
            return np.zeros(0, np.int16), [], f"no voice {name!r}"
        # parameters outlive a call: always set them so a result never depends on the last call's
        lib.espeak_SetParameter(_PARAM_RATE, int(rate if rate is not None else DEFAULT_RATE), 0)
        lib.espeak_SetParameter(_PARAM_PITCH, int(pitch if pitch is not None else DEFAULT_PITCH), 0)
        lib.espeak_ng_SetRandSeed(1)  # breathy voices draw noise; start every call from one seed
        _PCM.clear()
        _EVENTS.clear()
        buf = ctypes.create_string_buffer(data)
        err = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        pcm = np.concatenate(_PCM) if _PCM else np.zeros(0, dtype=np.int16)
        events = list(_EVENTS)
        _PCM.clear()
        _EVENTS.clear()
    return pcm, events, (f"espeak_Synth failed ({err})" if err != 0 else None)


class _Worker:
    """The espeak fork server (synth/tts/_espeak_worker.py), one per EspeakTTS. libespeak-ng carries
    waveform state (glottal phase, flutter) from one call to the next, so the same text sounds a
    few samples different depending on what was said before; each session runs in a fresh fork
    of a process that initialised espeak and never spoke, so a dialogue's audio depends on that
    dialogue alone, without starting a process per dialogue."""

    def __init__(self):
        import subprocess
        import sys
        self.proc = subprocess.Popen([sys.executable, "-m", "synth.tts._espeak_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0)

    def synth(self, text: str, name: str, pitch: int | None, rate: int | None):
        import json
        self.proc.stdin.write((json.dumps({"text": text, "voice": name, "pitch": pitch, "rate": rate}) + "\n").encode())
        head = self.proc.stdout.readline()
        if not head:
            raise TTSError(f"espeak worker exited (code {self.proc.poll()})")
        h = json.loads(head)
        raw = _read_exact(self.proc.stdout, 2 * h["samples"])
        return np.frombuffer(raw, dtype="<i2").copy(), [tuple(e) for e in h["events"]], h["error"]

    def end_session(self) -> None:
        self.proc.stdin.write(b'{"end": true}\n')
        if self.proc.stdout.readline() != b"end\n":
            raise TTSError(f"espeak worker did not end its session (code {self.proc.poll()})")

    def close(self) -> None:
        import subprocess
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _read_exact(f, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            raise TTSError("espeak worker closed its output early")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


class EspeakTTS:
    """espeak-ng voices for en fr de es it pt (and any other espeak language).

    Calls run in this process; inside `with tts.session():` they run in a fresh worker process
    instead, so the audio of the calls of one session is byte-identical from run to run."""

    name = "espeak"
    voice_kind = "espeak"
    word_times = "engine"
    parallel_sessions = True  # sessions run in a worker process: a second instance speaks alongside

    def __init__(self, sample_rate: int = 24000):
        self.sample_rate = int(sample_rate)
        self._server: _Worker | None = None
        self._worker: _Worker | None = None

    def session(self, seed: int = 0):
        """Context manager: the calls inside it are reproducible to the byte (see _Worker); espeak
        draws nothing at random, so `seed` is unused."""
        import contextlib

        @contextlib.contextmanager
        def cm():
            if self._server is None or self._server.proc.poll() is not None:
                self._server = _Worker()
            prev, self._worker = self._worker, self._server
            try:
                yield self
            finally:
                self._worker = prev
                self._server.end_session()
        return cm()

    def close(self) -> None:
        """Stop the worker process, if any."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown: modules may be gone already
            pass

    def synthesize(self, text: str, language: str, voice: str | None = None, pitch: int | None = None,
                   rate: int | None = None) -> tuple[np.ndarray, int, list[dict]]:
        """Speak `text`; `voice` is an espeak voice name (e.g. "fr+m3"; default: `language`),
        `pitch` 0-100, `rate` words per minute. Returns (audio, sample_rate, words)."""
        text = (text or "").strip()
        if not text:
            raise TTSError("espeak: empty text")
        name = voice or language
        spoken = say_as(text, language)
        if self._worker is not None:
            pcm, events, err = self._worker.synth(spoken, name, pitch, rate)
        else:
            pcm, events, err = raw_synth(spoken, name, pitch, rate)
        if err:
            raise TTSError(f"espeak: {err} for language {language!r}")
        audio = pcm.astype(np.float32) / 32768.0
        words = _words_from_events(spoken, events)
        for w, t in zip(words, [t for t in text.split() if re.search(r"\w", t)]):
            w["word"] = t  # the script's spelling
        starts = [w["start_s"] for w in words]
        ends = word_ends(audio, ESPEAK_RATE, starts)
        for w, e in zip(words, ends):
            w["end_s"] = e
        if self.sample_rate != ESPEAK_RATE:
            import soxr
            audio = soxr.resample(audio, ESPEAK_RATE, self.sample_rate).astype(np.float32)
        total = len(audio) / self.sample_rate  # resampling may shorten by a fraction of a sample
        for w in words:
            w["start_s"] = min(w["start_s"], total)
            w["end_s"] = min(w["end_s"], total)
        return audio, self.sample_rate, words


def _words_from_events(text: str, events: list[tuple[int, int, int]]) -> list[dict]:
    """Word events to the text's whitespace tokens, every token with a word character kept.

    espeak sometimes reports a word at the position of the previous token ("too many" gives two
    events inside "too") or several events for one token (numbers): extra events of a token are
    handed to the tokens after it that got none; a token still without one shares its
    predecessor's span in proportion to characters."""
    tokens = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    tokens = [t for t in tokens if re.search(r"\w", t[2])]
    if not tokens:
        return []
    starts: list[float | None] = [None] * len(tokens)
    spare: dict[int, list[float]] = {}
    ti = 0
    for pos, _length, ms in events:
        c = pos - 1  # 1-based character position
        while ti + 1 < len(tokens) and tokens[ti][1] <= c:
            ti += 1
        if starts[ti] is None:
            starts[ti] = ms / 1000.0
        else:
            spare.setdefault(ti, []).append(ms / 1000.0)
    if starts[0] is None:
        starts[0] = 0.0
    last = 0
    for i in range(1, len(tokens)):
        if starts[i] is None:
            pool = spare.get(last, [])
            starts[i] = pool.pop(0) if pool else None
        if starts[i] is not None:
            last = i
    # tokens still without a start: split the gap between known starts by characters
    i = 0
    while i < len(tokens):
        if starts[i] is None:
            j = i
            while j < len(tokens) and starts[j] is None:
                j += 1
            a = starts[i - 1]
            b = starts[j] if j < len(tokens) else None
            if b is None:
                b = a + 0.08 * sum(len(t[2]) for t in tokens[i - 1:j])
            chars = [len(t[2]) for t in tokens[i - 1:j]]
            tot = float(sum(chars))
            acc = 0.0
            for k in range(i, j):
                acc += chars[k - i]
                starts[k] = a + (b - a) * acc / tot
            i = j
        i += 1
    for i in range(1, len(starts)):
        starts[i] = max(starts[i], starts[i - 1])
    return [{"word": t[2], "start_s": s, "end_s": s} for t, s in zip(tokens, starts)]
