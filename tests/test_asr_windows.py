"""The ASR windowing shared by curation and the synthetic round trip: a channel's speech packed
first-fit into full windows comes back on the dialogue clock in the order it was said, and a piece
Whisper skipped (a window ended at a pause) is packed again and decoded."""

import numpy as np
import pytest
from pipelines.core.config import load_config
from pipelines.io.audio import encode_flac
from pipelines.models.asr import AsrParams
from synth.roundtrip import RoundTripStage

SR = 16000


class LevelAsr:
    """Stands in for Whisper: a word per burst of constant level in each window, named by its
    level (w1 for 0.1 ...), on the window clock; `first_only` hears only a window's first burst."""

    def __init__(self, first_only: bool = False):
        self.first_only, self.calls = first_only, []

    def transcribe_chunks(self, chunks, language=None):
        self.calls.append(len(chunks))
        out = []
        for i, (off, a) in enumerate(chunks):
            edges = np.flatnonzero(np.diff(np.r_[0, (a != 0).astype(np.int8), 0]))
            words = [{"word": f"w{round(float(a[s]) * 10)}", "start_s": off + s / SR, "end_s": off + e / SR,
                      "score": 1.0} for s, e in zip(edges[::2], edges[1::2])]
            words = words[:1] if self.first_only else words
            out.append({"start_s": off, "end_s": off + len(a) / SR, "text": " ".join(w["word"] for w in words),
                        "language": language, "avg_logprob": -0.2, "no_speech_prob": 0.01,
                        "compression_ratio": 1.1, "words": words, "chunk_index": i})
        return out


def _example():
    """Channel 0 says w1 (0-20 s), w2 (30-40 s), w3 (50-52 s): first fit puts w3 in w1's window and
    w2 in a window of its own; channel 1 says w4 (21-22 s)."""
    x = np.zeros((2, 55 * SR), np.float32)
    words = []
    for ch, level, s, e in ((0, 0.1, 0.0, 20.0), (0, 0.2, 30.0, 40.0), (0, 0.3, 50.0, 52.0), (1, 0.4, 21.0, 22.0)):
        x[ch, int(s * SR):int(e * SR)] = level
        words.append({"word": f"w{round(level * 10)}", "start_s": s, "end_s": e, "channel": ch})
    return {"audio": encode_flac(x, SR), "words": words, "language": "en", "duration_s": 55.0,
            "text_ch0": "w1 w2 w3", "text_ch1": "w4", "metrics": {}}


@pytest.mark.parametrize("first_only", [False, True])
def test_round_trip_packs_and_reads_back_in_spoken_order(first_only):
    cfg = load_config()
    st = RoundTripStage(AsrParams.from_config(cfg), {}, pad_s=0.25, pack_sep_s=0.3)
    st.asr, st._ready = LevelAsr(first_only), True
    wins, owners = st.windows([_example()])
    assert [[(round(s, 2), round(e, 2)) for s, e, _ in w.pieces] for w in wins] == [
        [(0.0, 20.25), (49.75, 52.25)], [(29.75, 40.25)], [(20.75, 22.25)]]
    assert [owners[w.group][1] for w in wins] == [0, 0, 1]
    ex = st({"examples": [_example()], "status": "ok"})["examples"][0]
    # the text in the order said (w3 was decoded with w1), so the CER is 0
    assert ex["metrics"]["roundtrip_cer_ch0"] == 0.0 and ex["roundtrip_cer"] == 0.0
    got = [(s["channel"], s["text"], round(s["start_s"], 2), round(s["end_s"], 2)) for s in ex["segments"]]
    assert got == [(0, "w1", 0.0, 20.0), (0, "w2", 30.0, 40.0), (0, "w3", 50.0, 52.0), (1, "w4", 21.0, 22.0)]
    # w3, skipped when Whisper stops at the pause after w1, is packed again and decoded once more
    assert st.counters.extra["windows"] == 3 and st.counters.extra["windows_retried"] == (1 if first_only else 0)
    assert all(s["avg_logprob"] == -0.2 for s in ex["segments"])  # trust signals kept
