"""ASR wrapper: WER on pyannote's reference transcript, word times on espeak speech, per-chunk language."""

import re

import numpy as np
import pytest
import soundfile as sf
from pipelines.core.config import load_config
from pipelines.curate.transcribe import TranscribeStage
from pipelines.models.asr import load_asr, speech_chunks

from tandem.testing.audio import EN_TURNS_2, make_conversation, read_rttm, read_stm_text, sample_paths

SEG_KEYS = {"start_s", "end_s", "text", "language", "language_prob", "avg_logprob", "no_speech_prob",
            "compression_ratio", "words"}


def normalise(text: str) -> str:
    """Lower case, punctuation dropped except apostrophes, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]", " ", text.lower())).strip()


@pytest.fixture(scope="session")
def asr():
    return load_asr(load_config(), threads=2)


def test_model_is_cached_per_process(asr):
    assert load_asr(load_config(), threads=2).model is asr.model


def test_wer_on_sample_stm_through_stage(tmp_path):
    import jiwer
    cfg = load_config()
    st = TranscribeStage.from_config(cfg)
    st.check()
    ref_turns = read_rttm(sample_paths()["rttm"])
    item = {"uri": "sample", "work_path": str(sample_paths()["wav"]), "status": "ok", "duration_s": 30.0,
            "speech": [[t["start_s"], t["end_s"]] for t in ref_turns], "turns": ref_turns}
    item = st(item)
    segs = item["segments"]
    assert segs and all(SEG_KEYS <= set(s) for s in segs)
    assert {s["language"] for s in segs} == {"en"}
    wer = jiwer.wer(normalise(read_stm_text(sample_paths()["stm"])), normalise(" ".join(s["text"] for s in segs)))
    # measured 0.136 on the whole file (0.235 recorded in ENVIRONMENT.md for another setup);
    # 0.25 fails on a wrong language, a dropped chunk or a broken model
    assert wer < 0.25, wer
    words = [w for s in segs for w in s["words"]]
    assert all(0 <= w["start_s"] <= w["end_s"] <= 30.5 and 0 <= w["score"] <= 1 for w in words)


def test_word_times_on_espeak(asr):
    audio, _, ref = make_conversation(EN_TURNS_2[:2], "en", 24000, seed=0)
    segs = asr.transcribe(audio, 24000, language="en")
    hyp = [w for s in segs for w in s["words"]]
    pairs = matched_words(hyp, ref)
    # the high-pitched f2 voice costs Whisper base a few words (measured 16/21 matched)
    assert len(pairs) >= 0.7 * len(ref), ([w["word"] for w in hyp], [w["word"] for w in ref])
    for h, r in pairs:
        assert abs(h["start_s"] - r["start_s"]) < 0.3 and abs(h["end_s"] - r["end_s"]) < 0.3, (h, r)


def matched_words(hyp: list[dict], ref: list[dict]) -> list[tuple[dict, dict]]:
    """(hyp, ref) word pairs with equal normalised text, aligned in order."""
    import difflib
    a, b = [normalise(w["word"]) for w in hyp], [normalise(w["word"]) for w in ref]
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return [(hyp[m.a + i], ref[m.b + i]) for m in sm.get_matching_blocks() for i in range(m.size)]


def test_language_per_chunk(asr):
    from synth.tts.espeak import EspeakTTS
    tts = EspeakTTS(16000)
    en, _, _ = tts.synthesize("The weather is lovely today and we will walk to the park.", "en")
    es, _, _ = tts.synthesize("Hoy hace muy buen tiempo y vamos a caminar hasta el parque.", "es")
    assert asr.detect_language(en, 16000)[0] == "en"
    assert asr.detect_language(es, 16000)[0] == "es"
    gap = np.zeros(16000, np.float32)
    audio = np.concatenate([gap, en, gap, gap, es, gap])
    t_es = (2 * 16000 + len(en) + 16000) / 16000
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        sf.write(f.name, audio, 16000)
        item = {"uri": f.name, "work_path": f.name, "status": "ok", "duration_s": len(audio) / 16000,
                "speech": [[1.0, 1.0 + len(en) / 16000], [t_es, t_es + len(es) / 16000]]}
        # one chunk per Whisper window: packed windows detect one language per window
        item = TranscribeStage.from_config(load_config(overrides={"asr": {"pack": "none"}}))(item)
    langs = [(s["language"], s["start_s"] >= t_es - 0.5) for s in item["segments"]]
    assert ("en", False) in langs and ("es", True) in langs and len({lang for lang, _ in langs}) == 2


def test_speech_chunks_respect_limit():
    ch = speech_chunks([(0, 5), (5.1, 12), (20, 70), (71.5, 72)], 28.0, 1.0)
    assert all(e - s <= 28.0 + 1e-9 for s, e in ch)
    assert ch[0] == (0, 12)
    assert sum(e - s for s, e in ch) == pytest.approx(12 + 50 + 0.5)
