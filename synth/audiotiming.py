"""Turn-taking and word timing measured on the rendered audio, the product the trainer hears.

Each channel's voice activity comes from silero VAD (the project's one VAD) with silero's own
region shape, as the quality filter runs it: threshold 0.5, speech >= 0.25 s, silences >= 0.1 s,
0.03 s padding. The IPU / pause / gap / overlap arithmetic is pipelines/core/turntaking.py's, on those
regions instead of the words.

Augmentation that puts sound on channel 1 where its speaker is silent (echo of channel 0, noise,
a reverb tail) is found as the speech the VAD hears on the augmented channel and not on the clean
one; those spans are labelled (echo when the echo was drawn) and the turn-taking of the augmented
audio is kept apart from the figure compared with real conversation.
"""

from __future__ import annotations

import numpy as np
from pipelines.core.turntaking import BRIDGE_S, STEP_S, _runs, region_activity

VAD_SETTINGS = {"threshold": 0.5, "min_speech_s": 0.25, "min_silence_s": 0.1, "pad_s": 0.03}
SOUND_FLOOR_DB = -50.0  # below the loudest frame: espeak's quietest consonants stay above it
LABEL_MIN_S = 0.05  # extra speech shorter than this is VAD jitter, not a sound of its own


class ChannelVad:
    """Speech regions of each channel of float32 [C, T] audio (silero, VAD_SETTINGS)."""

    def __init__(self, vad=None, threads: int = 1):
        if vad is None:
            from pipelines.models.vad import SileroVad
            vad = SileroVad(**VAD_SETTINGS, threads=threads)
        self.vad = vad

    def channel(self, x: np.ndarray, sr: int) -> list[tuple[float, float]]:
        from pipelines.io.audio import resample
        from pipelines.models.vad import VAD_SR
        x16 = x if sr == VAD_SR else resample(np.ascontiguousarray(x, dtype=np.float32), sr, VAD_SR)
        return [(round(s, 3), round(e, 3)) for s, e in self.vad.regions(x16)]

    def __call__(self, audio: np.ndarray, sr: int) -> list[list[tuple[float, float]]]:
        return [self.channel(audio[c], sr) for c in range(audio.shape[0])]


def sound_regions(x: np.ndarray, sr: int, floor_db: float = SOUND_FLOOR_DB,
                  frame_s: float = STEP_S) -> list[tuple[float, float]]:
    """Where a clean rendered channel makes sound: 10 ms frames whose RMS is within `floor_db` of
    the channel's loudest frame. Before augmentation a channel is exact silence between its
    placements, so this is the sound the words must cover, to the frame."""
    n = max(1, round(frame_s * sr))
    k = len(x) // n
    if k == 0:
        return []
    e = np.square(x[: k * n].astype(np.float32)).reshape(k, n).mean(axis=1)
    if not e.max() > 0:
        return []
    loud = e > e.max() * 10 ** (floor_db / 10)
    return [(round(a * frame_s, 3), round(b * frame_s, 3)) for a, b in _runs(loud)]


def _mask(spans, n: int, step_s: float = STEP_S) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for s, e in spans:
        m[round(float(s) / step_s): max(round(float(e) / step_s), round(float(s) / step_s) + 1)] = True
    return m


def extra_spans(augmented: list, clean: list, min_s: float = LABEL_MIN_S,
                step_s: float = STEP_S) -> list[tuple[float, float]]:
    """Spans where the VAD hears speech on the augmented channel but not on the clean one."""
    end = max((float(e) for _, e in list(augmented) + list(clean)), default=0.0)
    n = int(np.ceil(end / step_s)) + 1
    extra = _mask(augmented, n, step_s) & ~_mask(clean, n, step_s)
    return [(round(s * step_s, 3), round(e * step_s, 3)) for s, e in _runs(extra) if (e - s) * step_s >= min_s]


def word_spans(words: list[dict], channel: int) -> list[tuple[float, float]]:
    return [(float(w["start_s"]), float(w["end_s"])) for w in words if int(w["channel"]) == channel]


def word_audio_errors(words: list[dict], regions: list, tol_s: float = 0.1, step_s: float = STEP_S,
                      bridge_s: float = BRIDGE_S) -> dict:
    """How the words sit on their channel's sound, per channel then pooled.

    Words and VAD regions are each bridged into IPUs (silences < `bridge_s`); each word IPU met
    by exactly one VAD IPU (and that one by no other word IPU) gives a start error (VAD start
    minus word start: negative = sound before the words say) and an end error (VAD end minus word
    end: positive = sound after the words end, words cut short). Also: seconds of VAD speech
    farther than `tol_s` from every word of the channel (sound no word accounts for), and word
    IPUs the VAD does not hear at all (too short or quiet for silero's 0.25 s minimum).
    """
    starts, ends, outside, unheard, merged = [], [], 0.0, 0, 0
    wa = region_activity([word_spans(words, c) for c in (0, 1)], step_s, bridge_s)
    va = region_activity(regions, step_s, bridge_s)
    n = max(wa.shape[1], va.shape[1])
    wa = np.pad(wa, ((0, 0), (0, n - wa.shape[1])))
    va = np.pad(va, ((0, 0), (0, n - va.shape[1])))
    tol = round(tol_s / step_s)
    for c in (0, 1):
        w_runs, v_runs = _runs(wa[c]), _runs(va[c])
        hits = [[j for j, (vs, ve) in enumerate(v_runs) if vs < we and ve > ws] for ws, we in w_runs]
        owners: dict[int, int] = {}
        for h in hits:
            for j in h:
                owners[j] = owners.get(j, 0) + 1
        for (ws, we), h in zip(w_runs, hits):
            if not h:
                unheard += 1
            elif len(h) == 1 and owners[h[0]] == 1:
                vs, ve = v_runs[h[0]]
                starts.append((vs - ws) * step_s)
                ends.append((ve - we) * step_s)
            else:
                merged += 1
        near = wa[c].copy()
        for ws, we in w_runs:
            near[max(0, ws - tol): we + tol] = True
        outside += float((va[c] & ~near).sum()) * step_s
    return {"start_err_s": [round(x, 3) for x in starts], "end_err_s": [round(x, 3) for x in ends],
            "outside_words_s": round(outside, 3), "unheard_ipus": unheard, "merged_ipus": merged}


def error_table(errs: list[dict]) -> dict:
    """Pooled word/audio errors over dialogues: mean and 95th percentile of |error|, mean signed."""
    st = [x for e in errs for x in e["start_err_s"]]
    en = [x for e in errs for x in e["end_err_s"]]

    def q(v, f):
        return float(f(np.abs(v))) if v else float("nan")
    return {"ipus": len(st), "start_mean_s": float(np.mean(st)) if st else float("nan"),
            "start_abs_mean_s": q(st, np.mean), "start_abs_p95_s": q(st, lambda a: np.quantile(a, 0.95)),
            "end_mean_s": float(np.mean(en)) if en else float("nan"),
            "end_abs_mean_s": q(en, np.mean), "end_abs_p95_s": q(en, lambda a: np.quantile(a, 0.95)),
            "outside_words_s": sum(e["outside_words_s"] for e in errs),
            "unheard_ipus": sum(e["unheard_ipus"] for e in errs), "merged_ipus": sum(e["merged_ipus"] for e in errs)}


def audio_measures(words: list[dict], clean: list, augmented: list, aug: dict, sound: list) -> dict:
    """The example's params entries for what its audio says: `turn_taking_audio` (VAD regions of
    the rendered channels, before augmentation: the figure compared with real conversation),
    `turn_taking_augmented` (channel 1 after augmentation), `audio_labels` (channel-1 spans the
    augmentation made audible: echo where the echo of channel 0 lands, else augment) and
    `word_audio` (word_audio_errors of the words against the clean channels' sound: where the
    words are wrong) and `word_vad` (against the VAD regions: what the VAD adds to the sound)."""
    from pipelines.core.turntaking import measure_regions
    labels = []
    extra = extra_spans(augmented[1], clean[1]) if aug else []
    if extra:
        echo = aug.get("echo")
        lag = float(echo["delay_s"]) if echo else 0.0
        n = int(np.ceil(max(e for _, e in extra) / STEP_S)) + 1
        # the echo is channel 0's sound delayed: widened by the VAD's padding and reverb tails
        echo_at = _mask([(max(0.0, s + lag - 0.1), e + lag + 0.3) for s, e in clean[0] if s + lag < n * STEP_S], n) if echo \
            else np.zeros(n, dtype=bool)
        for s, e in extra:
            a, b = round(s / STEP_S), round(e / STEP_S)
            labels.append({"channel": 1, "start_s": s, "end_s": e,
                           "label": "echo" if echo_at[a:b].mean() >= 0.5 else "augment"})
    tt_aug = measure_regions(augmented)
    return {"turn_taking_audio": measure_regions(clean), "turn_taking_augmented": tt_aug,
            "audio_labels": labels, "word_audio": word_audio_errors(words, sound),
            "word_vad": word_audio_errors(words, clean)}
