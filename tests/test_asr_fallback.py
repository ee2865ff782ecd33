"""Whisper's temperature fallback in the batched decoder: the windows that fail are decoded again
together, on the encoder output already computed, and the kept decode follows Whisper's rules."""

from types import SimpleNamespace

import numpy as np
import pytest
from faster_whisper.transcribe import TranscriptionOptions
from pipelines.models.asr import FALLBACK_TEMPERATURES
from pipelines.models.asr_whisperx import TOKENS_PER_S, _batched_pipeline_cls, _scored

LOOP = "ha " * 60  # compression ratio far over 2.4


class FakeGenerator:
    """Window k's decode at temperature t is `plan[k][t]` = (text, avg log-prob, no-speech prob);
    each call records the windows it got (read from the encoder rows, which carry k)."""

    def __init__(self, plan):
        self.plan, self.calls = plan, []

    def generate(self, enc, prompts, *, sampling_temperature, max_length, **kw):
        ks = [int(row[0, 0]) for row in np.asarray(enc)]
        assert ks == [p[-1] for p in prompts]  # each prompt goes with its own window's encoder rows
        self.calls.append((sampling_temperature, ks, kw.get("num_hypotheses", 1), max_length))
        out = []
        for k in ks:
            text, lp, ns = self.plan[k].get(sampling_temperature, self.plan[k][0.0])
            toks = [ord(c) for c in text]
            out.append(SimpleNamespace(sequences_ids=[toks], scores=[lp * (len(toks) + 1) / len(toks)],
                                       no_speech_prob=ns))
        return out


def _options(temperatures):
    return TranscriptionOptions(
        beam_size=5, best_of=5, patience=1.0, length_penalty=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0,
        log_prob_threshold=-1.0, no_speech_threshold=0.6,
        compression_ratio_threshold=2.4, condition_on_previous_text=False, prompt_reset_on_temperature=0.5,
        temperatures=list(temperatures), initial_prompt=None, prefix=None, suppress_blank=True, suppress_tokens=[],
        without_timestamps=True, max_initial_timestamp=0.0, word_timestamps=False, prepend_punctuations="",
        append_punctuations="", multilingual=False, max_new_tokens=None, clip_timestamps=[],
        hallucination_silence_threshold=None, hotwords=None)


def _run(plan, temperatures=FALLBACK_TEMPERATURES):
    import ctranslate2
    gen = FakeGenerator(plan)
    pipe = _batched_pipeline_cls()(SimpleNamespace(model=gen, max_length=448))
    n = len(plan)
    pipe.durations = [28.0] * n
    pipe.last_temperatures = [0.0] * n
    tok = SimpleNamespace(decode=lambda ids: "".join(map(chr, ids)))
    enc = ctranslate2.StorageView.from_array(np.repeat(np.arange(n, dtype=np.float32), 8).reshape(n, 2, 4))
    prompts = [[50258, k] for k in range(n)]
    opts = _options(temperatures)
    first = [_scored(r, tok, opts) for r in gen.generate(enc, prompts, sampling_temperature=0.0, max_length=448)]
    gen.calls.clear()
    out = pipe.fall_back(None, enc, prompts, first, tok, opts)
    return [tok.decode(o["tokens"]) for o in out], gen.calls, pipe


def test_failing_windows_are_decoded_again_together():
    plan = [
        {0.0: ("fine words here", -0.3, 0.0)},                              # passes at once
        {0.0: (LOOP, -0.2, 0.0), 0.2: ("the loop broken", -0.4, 0.0)},      # compression, fixed at 0.2
        {0.0: ("mumble", -1.5, 0.1), 0.2: ("mumble?", -1.4, 0.1), 0.4: ("clear now", -0.5, 0.1)},  # log-prob
        {0.0: ("mm", -1.3, 0.9)},                                           # silence: not decoded again
    ]
    texts, calls, pipe = _run(plan)
    assert texts == ["fine words here", "the loop broken", "clear now", "mm"]
    # one call per temperature, holding every window that still fails, sampling best_of
    assert [(t, ks, h) for t, ks, h, _ in calls] == [(0.2, [1, 2], 5), (0.4, [2], 5)]
    assert pipe.fallback_decodes == 3 and pipe.last_temperatures == [0.0, 0.2, 0.4, 0.0]


def test_window_failing_everywhere_keeps_whisper_choice():
    # the best avg log-prob among the decodes under the compression limit (the loop at 0.4 is better
    # scored but repetitive), not the last one tried
    plan = [{0.0: ("garbled", -1.6, 0.0), 0.2: ("garbled two", -1.2, 0.0), 0.4: (LOOP, -0.1, 0.0)}]
    texts, calls, _ = _run(plan)
    assert len(calls) == len(FALLBACK_TEMPERATURES) - 1
    assert texts == ["garbled two"]
    # without a schedule (WhisperX's single temperature) nothing is decoded again
    texts, calls, _ = _run(plan, temperatures=(0.0,))
    assert texts == ["garbled"] and calls == []


def test_short_windows_cannot_loop_to_the_model_limit():
    pipe = _batched_pipeline_cls()(SimpleNamespace(max_length=448))
    pipe.durations = [2.0, 4.0]
    prompt = [1, 2, 3]
    assert pipe._max_length(prompt, [0, 1]) == pytest.approx(3 + 16 + np.ceil(TOKENS_PER_S * 4.0))
    pipe.durations = [30.0]  # a full window: the model's own limit
    assert pipe._max_length(prompt, [0]) == 448
    pipe.durations = []  # no durations known: the model's own limit
    assert pipe._max_length(prompt, [0]) == 448


class LidModel:
    """A multilingual decoder that counts its language detections and says "bonjour" to every window."""

    is_multilingual = True

    def __init__(self):
        self.detects = 0

    def detect_language(self, enc):
        self.detects += 1
        return [[("<|fr|>", 0.9), ("<|en|>", 0.1)] for _ in range(len(enc))]

    def generate(self, enc, prompts, **kw):
        return [SimpleNamespace(sequences_ids=[[ord(c) for c in "bonjour"]], scores=[-0.1], no_speech_prob=0.0)
                for _ in prompts]


def test_given_language_asks_the_audio_only_when_its_candidates_are_wanted():
    from pipelines.models.asr_whisperx import WhisperXAsr
    lid = LidModel()
    model = SimpleNamespace(model=lid, max_length=448, encode=lambda f: f,
                            get_prompt=lambda tok, previous_tokens, without_timestamps, hotwords: [50258, 7, 50359])
    tok = SimpleNamespace(language=7, decode=lambda ids: "".join(map(chr, ids)),
                          tokenizer=SimpleNamespace(token_to_id=lambda t: 8))
    pipe = _batched_pipeline_cls()(model)
    pipe.forced_language, pipe.durations = "fr", [5.0, 5.0]
    pipe.generate_segment_batched(np.zeros((2, 2, 4), np.float32), tok, _options([0.0]))
    assert lid.detects == 1 and [x[:2] for x in pipe.last_languages] == [("fr", 1.0)] * 2
    assert pipe.last_languages[0][2][0]["language"] == "fr"  # the audio's candidates kept
    pipe.hear_languages = False  # the round trip: no detection, no candidates
    pipe.generate_segment_batched(np.zeros((2, 2, 4), np.float32), tok, _options([0.0]))
    assert lid.detects == 1 and pipe.last_languages == [("fr", 1.0, None)] * 2
    # the switches reach the decoder from the backend's constructor
    fake_tok = SimpleNamespace(non_speech_tokens=[], transcribe=1, translate=2, sot=3, sot_prev=4, sot_lm=5,
                               no_speech=6)
    asr = WhisperXAsr(model, device="cpu", batch_size=2, beam_size=5, best_of=2, hear_languages=False)
    assert asr.pipe.hear_languages is False and asr._options(fake_tok).best_of == 2
    assert WhisperXAsr(model, device="cpu", batch_size=2, beam_size=5)._options(fake_tok).best_of == 5
