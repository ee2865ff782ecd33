"""Near-duplicate audio by how it sounds: copies of a real call are found whatever the ASR heard;
different recordings of the same words are not."""

import subprocess

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly
from filters.dedup import DedupParams, NearDupIndex, SignatureIndex, signature
from filters.fingerprint import FingerprintIndex, fingerprint
from pipelines.core.config import load_config

from tandem.testing import filters as T
from tandem.testing.audio import sample_paths

SR = 24000


@pytest.fixture(scope="module")
def call() -> np.ndarray:
    """pyannote's sample.wav (a real two-person call, 30 s), mono at 24 kHz."""
    x, sr = sf.read(str(sample_paths()["wav"]), dtype="float32", always_2d=True)
    return resample_poly(x.mean(axis=1), SR // 1000, sr // 1000).astype(np.float32)


@pytest.fixture(scope="module")
def params() -> DedupParams:
    return DedupParams.from_config(load_config())


def _codec(x: np.ndarray, args: list[str], fmt: str) -> np.ndarray:
    ff = ["ffmpeg", "-nostdin", "-v", "error"]
    enc = subprocess.run([*ff, "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "pipe:0", *args, "-f", fmt, "pipe:1"],
                         input=x.astype("<f4").tobytes(), capture_output=True, check=True).stdout
    dec = subprocess.run([*ff, "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(SR), "pipe:1"],
                         input=enc, capture_output=True, check=True).stdout
    return np.frombuffer(dec, "<f4").copy()


def _copies(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"resampled_16k": resample_poly(resample_poly(x, 2, 3), 3, 2).astype(np.float32),
            "mp3_24k": _codec(x, ["-b:a", "24k"], "mp3"),
            "opus_12k": _codec(x, ["-c:a", "libopus", "-b:a", "12k"], "ogg"),
            "telephone": _codec(x, ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-b:a", "16k"], "mp3"),
            "gain": x * 0.3,
            "trimmed": x[int(0.37 * SR): len(x) - int(0.5 * SR)]}


def _index(p: DedupParams) -> FingerprintIndex:
    return FingerprintIndex(p.audio_max_ber, p.audio_min_items, p.audio_min_votes, p.audio_min_cover)


def test_copies_of_a_real_call_are_found_and_other_stretches_are_not(call, params):
    # (the call's speech starts at 6.7 s) the same two people, other words
    first, second = call[6 * SR: 17 * SR], call[18 * SR: 29 * SR]
    idx = _index(params)
    idx.add("orig", fingerprint(first, SR))
    for name, y in _copies(first).items():
        got = idx.matches("copy", fingerprint(y, SR))
        assert [h for h, _ in got] == ["orig"], name
        assert got[0][1] <= params.audio_max_ber, name
    assert idx.matches("other", fingerprint(second, SR)) == []
    assert idx.matches("other", fingerprint(_codec(second, ["-b:a", "24k"], "mp3"), SR)) == []


def test_same_words_in_other_voices_are_not_copies(params):
    text = ("we should meet on tuesday to go over the budget for next year and then talk about the "
            "hiring plan for the new team in the spring")
    takes = [T.speak(text, "en", v)[0] for v in ("en-us+m3", "en-us+f2", "en+m1")]
    idx = _index(params)
    for i, a in enumerate(takes):
        assert idx.matches(f"t{i}", fingerprint(a, SR)) == [], i
        idx.add(f"t{i}", fingerprint(a, SR))
    # while a transcoded copy of one take is found
    assert [h for h, _ in idx.matches("c", fingerprint(_codec(takes[1], ["-b:a", "32k"], "mp3"), SR))] == ["t1"]


def test_two_channel_examples_match_whatever_the_channel_split(call, params):
    """A copy diarized differently (another split of the same mix, resampled) is the same sound."""
    x = call[6 * SR: 20 * SR]
    split_a = np.stack([np.where(np.arange(len(x)) < 7 * SR, x, 0), np.where(np.arange(len(x)) >= 7 * SR, x, 0)])
    y = _copies(x)["resampled_16k"][: len(x)]
    split_b = np.stack([np.where(np.arange(len(y)) >= 4 * SR, y, 0), np.where(np.arange(len(y)) < 4 * SR, y, 0)])
    cfg = load_config()
    idx = NearDupIndex("/nonexistent-never-written", DedupParams.from_config(cfg))
    a = T.example(split_a, kind="real", language="en", example_id="a", text=("hello there how are you", "fine"))
    b = T.example(split_b, kind="real", language="en", example_id="b", text=("completely other words heard", ""))
    assert idx.check_and_add(a).keep
    d = idx.check_and_add(b)
    assert not d.keep and d.reason == "near_duplicate_audio" and "example a" in d.detail
    assert d.metrics["dedup.audio_ber"] <= params.audio_max_ber


def test_matching_is_symmetric_and_silence_never_matches(call, params):
    sig = {}
    x = call[7 * SR: 17 * SR]
    clips = {"a": x, "b": _copies(x)["opus_12k"], "s1": np.zeros(10 * SR, np.float32),
             "s2": np.full(10 * SR, 1e-5, np.float32)}
    for k, v in clips.items():
        sig[k] = signature(T.example(v, kind="real", language="en", example_id=k), params)
    for order in (["a", "b", "s1", "s2"], ["s2", "s1", "b", "a"]):
        idx = SignatureIndex(params)
        found = {}
        for k in order:
            found[k] = [h for h, _ in idx.sounds(sig[k])]
            idx.add(k, sig[k]["audio_hash"], sig[k]["minhash"], sig[k]["fingerprint"])
        later = max("a", "b", key=order.index)  # the copy is found by whichever arrives second
        assert {k: v for k, v in found.items() if v} == {later: [{"a": "b", "b": "a"}[later]]}
        assert found["s1"] == [] and found["s2"] == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.floats(0.0, 6.0), st.sampled_from([8000, 16000, 22050, 24000, 44100]),
       st.sampled_from(["noise", "nan", "clip", "dc"]))
def test_any_audio_gives_a_bounded_fingerprint(seed, dur, sr, kind):
    """Hostile samples (NaN, clipping, DC, sub-window lengths, odd rates) give a fingerprint
    of the expected length or none, never an exception from FFmpeg."""
    x = np.random.default_rng(seed).standard_normal(int(dur * sr)).astype(np.float32)
    if kind == "nan":
        x[::7] = np.nan
    elif kind == "clip":
        x *= 50
    elif kind == "dc":
        x = np.full_like(x, 0.5)
    fp = fingerprint(x, sr)
    assert fp.dtype == np.uint32 and len(fp) <= dur * 8.1 + 1
    idx = FingerprintIndex(0.2, 16, 4, 0.5)
    idx.add("x", fp)
    assert idx.matches("x", fp) == []  # never its own duplicate
