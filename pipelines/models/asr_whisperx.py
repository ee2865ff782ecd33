"""The WhisperX backend: batched Whisper decoding of VAD-bounded chunks, then wav2vec2 forced alignment.

Decoding runs faster-whisper's `BatchedInferencePipeline` (the batched pipeline WhisperX contributed
to faster-whisper) on the model `whisperx.load_model` loads. WhisperX's own
`FasterWhisperPipeline.transcribe` batches the same way but returns only text and avg_logprob per
chunk; this pipeline returns, from the same batched `generate`, the no-speech probability,
compression ratio and Whisper's own word times, which the trust filters and the fallback for words
the aligner cannot place need. A subclass keeps the language detected per chunk and its top
candidates (the stock one detects it to pick each prompt, then drops it).

Alignment is `whisperx.align`, called once per Whisper segment so that the sentences it splits a
segment into all come back to that segment; its words are then paired with Whisper's words by
text in order (difflib), never by position across segments.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.models.aligner import Aligner
from pipelines.models.asr_base import ASR_SR, Asr, to_16k_mono, top_languages
from pipelines.models.registry import ModelMissing

# A word the aligner could not place keeps Whisper's cross-attention time; its score is Whisper's
# word probability scaled by this, so it ranks below an aligned word of the same ASR confidence.
UNALIGNED_SCORE_SCALE = 0.5
# A window decodes at most twice Whisper's 224 new tokens per 30 s, in proportion to its length (plus
# a margin): a repetition loop in a short window stops where its speech could not go on. At 224 per
# 30 s the real-speech packing test (tests/test_transcribe_pack.py) lost words: WER .259 -> .309.
TOKENS_PER_S, TOKEN_MARGIN = 2 * 224 / 30, 16


class _TandemVad:
    """Stands in for WhisperX's VAD: tandem's own VAD bounds the chunks this backend decodes."""

    def __call__(self, *_a, **_k):
        raise RuntimeError("WhisperXAsr decodes tandem's VAD chunks; FasterWhisperPipeline.transcribe is unused")


def _norm(w: str) -> str:
    return re.sub(r"[^\w']", "", w.lower())


def _scored(r, tokenizer, options) -> dict:
    """A generate result as the batched pipeline keeps it, with faster-whisper's avg log-prob and
    the compression ratio of its text (the fallback tests)."""
    from faster_whisper.transcribe import get_compression_ratio
    tokens = r.sequences_ids[0]
    cum = r.scores[0] * (len(tokens) ** options.length_penalty)
    return {"avg_logprob": cum / (len(tokens) + 1), "no_speech_prob": r.no_speech_prob, "tokens": tokens,
            "compression_ratio": get_compression_ratio(tokenizer.decode(tokens).strip())}


def _fails(o: dict, options) -> bool:
    """Whisper's test for decoding again at the next temperature: too repetitive or too unlikely,
    unless the window is silence (no-speech probability over its threshold and a low log-prob)."""
    lp, cr, ns = options.log_prob_threshold, options.compression_ratio_threshold, options.no_speech_threshold
    low = lp is not None and o["avg_logprob"] < lp
    if ns is not None and low and o["no_speech_prob"] > ns:
        return False
    return low or (cr is not None and o["compression_ratio"] > cr)


def _batched_pipeline_cls():
    from faster_whisper.transcribe import BatchedInferencePipeline

    class ChunkBatcher(BatchedInferencePipeline):
        """BatchedInferencePipeline that records (language, probability) per decoded chunk."""

        forced_language: str | None = None
        hear_languages = True  # with a forced language: still keep Whisper's candidates (one decoder step)
        last_languages: tuple = ()
        last_temperatures: list = []  # the temperature each window of the last batch was decoded at
        fallback_decodes = 0  # windows decoded again at a higher temperature
        durations: list = []  # seconds of audio in each window of the batch being decoded

        def generate_segment_batched(self, features, tokenizer, options):
            # faster-whisper 1.2.1's method, plus the per-chunk language kept in last_languages
            n = features.shape[0]
            prompt = self.model.get_prompt(
                tokenizer, previous_tokens=(tokenizer.encode(options.initial_prompt)
                                            if options.initial_prompt is not None else []),
                without_timestamps=options.without_timestamps, hotwords=options.hotwords)
            encoder_output = self.model.encode(features)
            prompts = [prompt.copy() for _ in range(n)]
            if self.forced_language is not None and not self.hear_languages:
                langs = [(self.forced_language, 1.0, None)] * n
            elif self.model.model.is_multilingual:
                # detected even when the language is given (one decoder step on the encoder output
                # already computed): the language filter asks the audio before trusting the text
                idx = prompt.index(tokenizer.language)
                langs = []
                for i, cands in enumerate(self.model.model.detect_language(encoder_output)):
                    tok, p = cands[0]
                    top = top_languages((t[2:-2], q) for t, q in cands)
                    if self.forced_language is None:
                        prompts[i][idx] = tokenizer.tokenizer.token_to_id(tok)
                        langs.append((tok[2:-2], float(p), top))
                    else:
                        langs.append((self.forced_language, 1.0, top))
            else:
                langs = [(self.forced_language or "en", 1.0, None)] * n
            self.last_languages = langs
            self.last_temperatures = [options.temperatures[0]] * n
            results = self.model.model.generate(
                encoder_output, prompts, beam_size=options.beam_size, patience=options.patience,
                length_penalty=options.length_penalty, max_length=self._max_length(prompt, range(n)),
                suppress_blank=options.suppress_blank, suppress_tokens=options.suppress_tokens,
                return_scores=True, return_no_speech_prob=True, sampling_temperature=options.temperatures[0],
                repetition_penalty=options.repetition_penalty, no_repeat_ngram_size=options.no_repeat_ngram_size)
            out = [_scored(r, tokenizer, options) for r in results]
            return encoder_output, self.fall_back(features, encoder_output, prompts, out, tokenizer, options)

        def _max_length(self, prompt, idx) -> int:
            """Prompt plus TOKENS_PER_S for the longest window of `idx` (`durations`, s) and a
            margin, within the model's limit: a short window cannot loop on to 448 tokens."""
            if not self.durations:
                return self.model.max_length
            dur = max(self.durations[i] for i in idx)
            return min(self.model.max_length, len(prompt) + TOKEN_MARGIN + math.ceil(TOKENS_PER_S * dur))

        def fall_back(self, features, encoder_output, prompts, out, tokenizer, options):
            """Whisper's temperature fallback, batched: every window whose decode fails the
            compression-ratio or log-prob test (and is not silence) is decoded again with the
            others that failed, sampling best_of at the next temperature, on the encoder output
            already computed; a window that fails at every temperature keeps, as Whisper does, the
            decode with the best avg log-prob among those under the compression limit."""
            import ctranslate2
            tried = [[o] for o in out]
            todo = [i for i, o in enumerate(out) if _fails(o, options)]
            for t in options.temperatures[1:]:
                if not todo:
                    break
                if getattr(encoder_output, "device", "cpu") == "cpu":
                    enc = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoder_output)[todo]))
                else:  # on a GPU encoding the few windows again is cheaper than a host round trip
                    enc = self.model.encode(features[todo])
                # seeded, yet not reproducible on CPU (CTranslate2 issue 1757): three identical round-trip reruns
                # gave one channel CER .30/.47/.33; the first pass (beam search) is reproducible
                ctranslate2.set_random_seed(0)
                rs = self.model.model.generate(
                    enc, [prompts[i] for i in todo], beam_size=1, num_hypotheses=options.best_of,
                    sampling_topk=0, sampling_temperature=t, length_penalty=options.length_penalty,
                    max_length=self._max_length(prompts[0], todo), suppress_blank=options.suppress_blank,
                    suppress_tokens=options.suppress_tokens, return_scores=True, return_no_speech_prob=True,
                    repetition_penalty=options.repetition_penalty, no_repeat_ngram_size=options.no_repeat_ngram_size)
                self.fallback_decodes += len(todo)
                failed = []
                for i, r in zip(todo, rs, strict=True):
                    o = _scored(r, tokenizer, options)
                    tried[i].append(o)
                    self.last_temperatures[i] = t
                    if _fails(o, options):
                        failed.append(i)
                    else:
                        out[i] = o
                todo = failed
            cr = options.compression_ratio_threshold
            for i in todo:
                cands = [o for o in tried[i] if cr is None or o["compression_ratio"] <= cr] or tried[i]
                out[i] = max(cands, key=lambda o: o["avg_logprob"])
            return out

    return ChunkBatcher


class WhisperXAsr(Asr):
    """Batched Whisper over chunks + whisperx.align; words the aligner misses keep Whisper's times."""

    backend = "whisperx"

    def __init__(self, model: Any, *, device: str, batch_size: int, beam_size: int,
                 aligners: dict[str, Aligner | None] | None = None, align_loader: Any = None,
                 temperatures: Sequence[float] = (0.0,), log_prob_threshold: float | None = -1.0,
                 best_of: int = 5, hear_languages: bool = True):
        """`model`: a faster-whisper WhisperModel (whisperx.load_model(...).model); `aligners`:
        {language: Aligner} (pipelines/models/aligner.py); `align_loader(lang)` loads one more or
        returns None when the language has no aligner (its words keep Whisper's times);
        `temperatures`: Whisper's fallback schedule (one: no fallback, as WhisperX decodes);
        `log_prob_threshold`: None decodes again only windows over the compression limit;
        `best_of`: hypotheses sampled per window at each fallback temperature (Whisper's 5);
        `hear_languages` False: with a language given, Whisper's candidates are not asked for
        (segments carry audio_languages None), for callers that never read them."""
        self.model = model
        self.device = device
        self.batch_size = int(batch_size)
        self.beam_size = int(beam_size)
        self.aligners = dict(aligners or {})
        self.align_loader = align_loader
        self.temperatures = [float(t) for t in temperatures]
        self.log_prob_threshold = log_prob_threshold
        self.best_of = int(best_of)
        self.pipe = _batched_pipeline_cls()(model)
        self.pipe.hear_languages = bool(hear_languages)
        self.counts = {"words": 0, "words_unaligned": 0, "chunks": 0, "batches": 0, "fallback_chunks": 0}

    # -- decoding --------------------------------------------------------------------------------
    def _options(self, tokenizer):
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens
        return TranscriptionOptions(
            beam_size=self.beam_size, best_of=self.best_of, patience=1.0, length_penalty=1.0, repetition_penalty=1.0,
            no_repeat_ngram_size=0, log_prob_threshold=self.log_prob_threshold, no_speech_threshold=0.6,
            compression_ratio_threshold=2.4, condition_on_previous_text=False, prompt_reset_on_temperature=0.5,
            temperatures=self.temperatures, initial_prompt=None, prefix=None, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            # WhisperX decodes without timestamp tokens: one segment per VAD chunk, times from alignment
            without_timestamps=True, max_initial_timestamp=0.0, word_timestamps=True,
            prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False, max_new_tokens=None, clip_timestamps=[], hallucination_silence_threshold=None,
            hotwords=None)

    def decode(self, chunks: Sequence[tuple[float, np.ndarray]], language: str | None = None) -> list[dict]:
        """Whisper segments of 16 kHz chunks [(offset_s, audio)], decoded `batch_size` at a time."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        m = self.model
        tok = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language=language or "en")
        opts = self._options(tok)
        self.pipe.forced_language = language
        self.pipe.last_speech_timestamp = 0.0
        segs: list[dict] = []
        for i in range(0, len(chunks), self.batch_size):
            part = chunks[i:i + self.batch_size]
            feats = np.stack([pad_or_trim(m.feature_extractor(a)[..., :-1]) for _, a in part])
            meta = [{"offset": off, "duration": len(a) / ASR_SR,
                     "segments": [{"start": int(off * ASR_SR), "end": int(off * ASR_SR) + len(a)}]}
                    for off, a in part]
            self.pipe.durations = [len(a) / ASR_SR for _, a in part]
            outs = self.pipe.forward(feats, tok, meta, opts)
            self.counts["batches"] += 1
            self.counts["chunks"] += len(part)
            self.counts["fallback_decodes"] = self.pipe.fallback_decodes
            self.counts["fallback_chunks"] += sum(t > self.temperatures[0] for t in self.pipe.last_temperatures)
            for k, ((off, a), (lang, lp, top), out) in enumerate(zip(part, self.pipe.last_languages, outs,
                                                                        strict=True)):
                for s in out:
                    text = s["text"].strip()
                    if not text:
                        continue
                    words = [{"word": w["word"].strip(), "start_s": float(w["start"]), "end_s": float(w["end"]),
                              "prob": float(w["probability"])} for w in (s.get("words") or []) if w["word"].strip()]
                    segs.append({"start_s": float(s["start"]), "end_s": float(s["end"]), "text": text,
                                 "language": lang, "language_prob": lp, "audio_languages": top,
                                 "avg_logprob": float(s["avg_logprob"]),
                                 "no_speech_prob": float(s["no_speech_prob"]),
                                 "compression_ratio": float(s["compression_ratio"]),
                                 "whisper_words": words, "chunk": (off, a), "chunk_index": i + k})
        return segs

    # -- alignment -------------------------------------------------------------------------------
    def _aligner(self, lang: str):
        if lang not in self.aligners:
            self.aligners[lang] = self.align_loader(lang) if self.align_loader else None
        return self.aligners[lang]

    def preload(self, languages: Sequence[str]) -> None:
        """Load the aligners of `languages` now (a worker's setup), not at its first chunk."""
        for lang in languages:
            self._aligner(lang)

    def align(self, seg: dict) -> list[dict]:
        """Words of one Whisper segment: aligned times where the aligner placed the word, else
        Whisper's, each clamped into the segment's chunk."""
        off, audio = seg.pop("chunk")
        wwords = seg.pop("whisper_words")
        s0, s1 = off, off + len(audio) / ASR_SR
        al = self._aligner(seg["language"])
        aligned = al.align_text(seg["text"], audio) if al is not None else []
        known = al.vocab if al is not None else {}
        out = []
        a_norm = [_norm(w.get("word", "")) for w in aligned]
        w_norm = [_norm(w["word"]) for w in wwords]
        pair: dict[int, dict] = {}
        sm = difflib.SequenceMatcher(a=w_norm, b=a_norm, autojunk=False)
        for blk in sm.get_matching_blocks():
            for k in range(blk.size):
                pair[blk.a + k] = aligned[blk.b + k]
        for i, w in enumerate(wwords):
            a = pair.get(i)
            placed = (a is not None and "start" in a and "end" in a and "score" in a
                      and any(c.isalnum() and c in known for c in a["word"].lower()))
            if placed:
                st, en, sc = off + float(a["start"]), off + float(a["end"]), float(a["score"])
            else:
                st, en, sc = w["start_s"], w["end_s"], UNALIGNED_SCORE_SCALE * w["prob"]
            st = min(max(st, s0), s1)
            en = min(max(en, st), s1)
            out.append({"word": w["word"], "start_s": st, "end_s": en, "score": min(max(sc, 0.0), 1.0),
                        "aligned": bool(placed)})
        self.counts["words"] += len(out)
        self.counts["words_unaligned"] += sum(not w["aligned"] for w in out)
        return out

    # -- Asr interface ---------------------------------------------------------------------------
    def transcribe_chunks(self, chunks: Sequence[tuple[float, np.ndarray]], language: str | None = None) -> list[dict]:
        segs = self.decode(chunks, language)
        for seg in segs:
            seg["words"] = self.align(seg)
            if seg["words"]:  # the segment spans its words (the chunk around them holds padding)
                seg["start_s"] = min(w["start_s"] for w in seg["words"])
                seg["end_s"] = max(w["end_s"] for w in seg["words"])
        return segs

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> list[dict]:
        a = to_16k_mono(audio, sample_rate)
        if len(a) < ASR_SR // 10:
            return []
        n = max(1, -(-len(a) // (28 * ASR_SR)))
        step = -(-len(a) // n)
        return self.transcribe_chunks([(i * step / ASR_SR, a[i * step:(i + 1) * step]) for i in range(n)], language)


# ---- loading ---------------------------------------------------------------------------------------

def load_whisperx_model(path: str, device: str, compute_type: str, threads: int, download_root: Path | None,
                        local_only: bool):
    """The CTranslate2 Whisper model through whisperx.load_model (its VAD left out: tandem's bounds chunks)."""
    import whisperx
    try:
        pipe = whisperx.load_model(str(path), device, compute_type=compute_type, threads=threads,
                                   vad_model=_TandemVad(), download_root=str(download_root) if download_root else None,
                                   local_files_only=local_only)
    except Exception as e:
        raise ModelMissing(
            f"whisperx ASR model {path!r} could not be loaded ({type(e).__name__}: {e}); set asr.model to a "
            "local CTranslate2 directory, or prepare the cache with `tandem models fetch`") from e
    return pipe.model
