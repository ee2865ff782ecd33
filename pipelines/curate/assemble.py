"""Words to speakers, and two-channel training examples from one curated source.

The main speaker goes to channel 0, everyone else to channel 1, silence elsewhere (Moshi's recipe
for diarized audio); two-channel sources keep their channels. Overlap turns (`overlap: True`, where
the diarizer hears a second speaker) put that stretch of the mono mix on both channels; words keep
the speaker of the exclusive turns and are flagged `overlap`. Long recordings are cut at silences
into examples of at most `examples.max_duration_s`, never inside a word.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pipelines.core.config import typed_section
from pipelines.core.stage import Resources, Stage, reject

from tandem import __version__

GRID_S = 0.01  # frame of the overlap/speech ratio grid


@dataclass(frozen=True)
class ExampleParams:
    """The `examples` config section (meanings in pipelines/core/defaults/10_curate.yaml), plus the
    backend names stamped into each example's params."""

    main_speaker: str
    max_duration_s: float
    min_speech_s: float
    fade_s: float
    keep_work: bool
    diarize_backend: str
    asr_backend: str


def assign_words(segments: list[dict], turns: list[dict], two_channel: bool,
                 speech_ch: list | None = None) -> list[dict]:
    """Flatten segment words and give each the speaker whose exclusive turn it overlaps most.

    A word with no overlapping turn goes to the nearest one. Overlap turns never take a word (in
    overlapped speech the exclusive speaker is the dominant voice, the one ASR transcribes), so each
    speaker's words stay on their own channel. `overlap` marks words that also overlap another
    speaker's turn, overlap turns included (for two-channel sources, the other channel's speech).
    """
    words = []
    if not turns:
        return words
    excl = [t for t in turns if not t.get("overlap")] or turns
    ts = np.array([[t["start_s"], t["end_s"]] for t in excl], float)
    spk = [t["speaker"] for t in excl]
    alls = np.array([[t["start_s"], t["end_s"]] for t in turns], float)
    allspk = [t["speaker"] for t in turns]
    other = None
    if two_channel and speech_ch is not None:
        other = [np.asarray(speech_ch[1], float).reshape(-1, 2), np.asarray(speech_ch[0], float).reshape(-1, 2)]
    for seg in segments:
        for w in seg["words"]:
            s, e = w["start_s"], max(w["end_s"], w["start_s"])
            if two_channel:
                ch = int(seg.get("channel", 0))
                o = other[ch] if other is not None else np.zeros((0, 2))
                ov = bool(np.any((np.minimum(o[:, 1], e) - np.maximum(o[:, 0], s)) > 0)) if len(o) else False
                words.append({**w, "speaker": f"CH{ch}", "channel": ch, "overlap": ov,
                              "seg": id(seg)})
                continue
            inter = np.minimum(ts[:, 1], e) - np.maximum(ts[:, 0], s)
            if inter.max() > 0:
                best = spk[int(np.argmax(inter))]
            else:
                dist = np.maximum(ts[:, 0] - e, s - ts[:, 1])
                best = spk[int(np.argmin(dist))]
            both = np.minimum(alls[:, 1], e) - np.maximum(alls[:, 0], s)
            ov = any(both[i] > 0 and allspk[i] != best for i in range(len(allspk)))
            words.append({**w, "speaker": best, "overlap": bool(ov), "seg": id(seg)})
    words.sort(key=lambda w: w["start_s"])
    return words


def pick_main(turns: list[dict], policy: str, seed: int) -> str:
    """The channel-0 speaker: the one with most speech (exclusive turns), or a seeded random choice."""
    tot: dict[str, float] = {}
    for t in [t for t in turns if not t.get("overlap")] or turns:
        tot[t["speaker"]] = tot.get(t["speaker"], 0.0) + t["end_s"] - t["start_s"]
    names = sorted(tot)
    if policy == "random":
        return names[int(np.random.default_rng(seed).integers(len(names)))]
    if policy != "most_speech":
        raise ValueError(f"examples.main_speaker {policy!r}: expected 'most_speech' or 'random'")
    return max(names, key=lambda n: (tot[n], n))


def cut_points(duration: float, words: list[dict], turns: list[dict], max_s: float) -> list[tuple[float, float]]:
    """Spans of at most `max_s` covering the recording, cut in the middle of silences.

    Preferred cuts lie where no turn and no word is active; failing that, between two words;
    a span is only cut hard (at max_s) when one word is longer than max_s.
    """
    busy = sorted([(t["start_s"], t["end_s"]) for t in turns] + [(w["start_s"], w["end_s"]) for w in words])
    gaps, wgaps = [], []  # midpoints of silences; of gaps between words
    end = 0.0
    for s, e in busy:
        if s > end:
            gaps.append((end + s) / 2)
        end = max(end, e)
    ws = sorted((w["start_s"], w["end_s"]) for w in words)
    wend = 0.0
    for s, e in ws:
        if s >= wend:
            wgaps.append((wend + s) / 2)
        wend = max(wend, e)
    gaps, wgaps = np.array(gaps), np.array(wgaps)
    spans, cur = [], 0.0
    while duration - cur > max_s:
        lim = cur + max_s
        for cand in (gaps, wgaps):
            ok = cand[(cand > cur + 1e-3) & (cand <= lim)] if len(cand) else cand
            if len(ok):
                c = float(ok.max())
                break
        else:
            c = lim
        spans.append((cur, c))
        cur = c
    spans.append((cur, duration))
    return spans


def _mask(spans: list[tuple[float, float]], n: int, sr: int, t0: float, fade: int) -> np.ndarray:
    m = np.zeros(n, np.float32)
    for s, e in spans:
        a, b = max(0, int((s - t0) * sr)), min(n, int((e - t0) * sr))
        if b > a:
            m[a:b] = 1.0
    if fade > 1 and m.any():  # short ramps so channel switches do not click
        k = np.ones(fade, np.float32) / fade
        m = np.convolve(m, k, mode="same")
    return m


def _ratios(spk_spans: dict[str, list], t0: float, t1: float) -> tuple[float, float]:
    n = max(1, round((t1 - t0) / GRID_S))
    cnt = np.zeros(n, np.int16)
    for spans in spk_spans.values():
        m = np.zeros(n, bool)
        for s, e in spans:
            a, b = max(0, int((s - t0) / GRID_S)), min(n, int((e - t0) / GRID_S))
            if b > a:
                m[a:b] = True
        cnt += m
    speech = (cnt > 0).sum()
    return float((cnt > 1).sum() / max(speech, 1)), float(speech / n)


class AssembleStage(Stage):
    """Two-channel examples with per-word, per-speaker times; the source row; work file cleanup."""

    name = "assemble"
    reads = ("work_path", "turns", "segments", "source_id", "seed", "cfg_hash")
    writes = ("examples", "source")

    def __init__(self, params: ExampleParams, *, resources: Resources | None = None):
        super().__init__(resources=resources)
        self.params = params

    @classmethod
    def from_config(cls, cfg: dict) -> AssembleStage:
        from pipelines.core.config import section
        p = typed_section(ExampleParams, cfg, "examples", diarize_backend=section(cfg, "diarize")["backend"],
                          asr_backend=section(cfg, "asr")["backend"])
        return cls(p, resources=Resources.for_stage(cfg, cls.name))

    def process(self, item: dict) -> dict:
        import soundfile as sf
        from pipelines.core import contracts
        from pipelines.io.audio import encode_flac
        ec = self.params
        two = bool(item.get("two_channel"))
        turns = item["turns"]
        words = assign_words(item["segments"], turns, two, item.get("speech_ch"))
        if two:
            main = "CH0"
            for w in words:
                w["channel"] = int(w["channel"])
        else:
            main = pick_main(turns, ec.main_speaker, int(item["seed"]))
            for w in words:
                w["channel"] = 0 if w["speaker"] == main else 1
        spk_spans: dict[str, list] = {}
        for t in turns:
            spk_spans.setdefault(t["speaker"], []).append((t["start_s"], t["end_s"]))
        for w in words:  # a word outside every turn still keeps its audio on its channel
            spk_spans.setdefault(w["speaker"], []).append((w["start_s"], w["end_s"]))
        total = {k: sum(e - s for s, e in v) for k, v in spk_spans.items()}
        seg_by_id = {id(s): s for s in item["segments"]}
        sr = int(item["sample_rate"])
        dur = float(item["duration_s"])
        spans = cut_points(dur, words, turns, ec.max_duration_s)
        fade = int(ec.fade_s * sr)
        examples, skipped = [], 0
        cfg_hash = item["cfg_hash"]
        diar, asr = ec.diarize_backend, ec.asr_backend
        with sf.SoundFile(item["work_path"]) as f:
            for t0, t1 in spans:
                ws = [w for w in words if w["start_s"] >= t0 - 1e-6 and w["end_s"] <= t1 + 1e-6]
                sp = sum(min(e, t1) - max(s, t0) for v in spk_spans.values() for s, e in v if e > t0 and s < t1)
                if not ws or sp < ec.min_speech_s:
                    skipped += 1
                    continue
                a0, a1 = round(t0 * sr), round(t1 * sr)
                f.seek(a0)
                x = f.read(a1 - a0, dtype="float32", always_2d=True)
                n = len(x)
                if two:
                    audio = x[:, :2]
                else:
                    mono = x[:, 0]
                    m0 = _mask(spk_spans.get(main, []), n, sr, t0, fade)
                    m1 = _mask([s for k, v in spk_spans.items() if k != main for s in v], n, sr, t0, fade)
                    audio = np.stack([mono * m0, mono * m1], axis=1)
                present = [k for k, v in spk_spans.items() if any(e > t0 and s < t1 for s, e in v)]
                others = sorted((k for k in present if k != main), key=lambda k: -total[k])
                sid = item["source_id"]  # labels are the diarizer's, per source: stored as speaker ids
                speakers = [contracts.speaker_id(sid, k) for k in [main, *others]]
                ov, spr = _ratios({k: spk_spans[k] for k in present}, t0, t1)
                wrows = [{"channel": int(w["channel"]), "speaker": contracts.speaker_id(sid, w["speaker"]),
                          "word": w["word"],
                          "start_s": round(w["start_s"] - t0, 3), "end_s": round(w["end_s"] - t0, 3),
                          "score": float(w["score"]), "overlap": bool(w["overlap"])} for w in ws]
                segs, langs = [], {}
                for sid in dict.fromkeys(w["seg"] for w in ws):
                    g = seg_by_id[sid]
                    gw = [w for w in ws if w["seg"] == sid]
                    chs = [w["channel"] for w in gw]
                    s0, s1 = max(g["start_s"], t0), min(g["end_s"], t1)
                    whole = len(gw) == len(g["words"])
                    segs.append({"channel": int(max(set(chs), key=chs.count)), "start_s": round(s0 - t0, 3),
                                 "end_s": round(s1 - t0, 3),
                                 "text": g["text"] if whole else " ".join(w["word"] for w in gw),
                                 "language": g["language"], "language_prob": float(g["language_prob"]),
                                 "audio_languages": g.get("audio_languages"),
                                 "avg_logprob": float(g["avg_logprob"]), "no_speech_prob": float(g["no_speech_prob"]),
                                 "compression_ratio": float(g["compression_ratio"])})
                    langs[g["language"]] = langs.get(g["language"], 0.0) + (s1 - s0)
                language = max(langs, key=langs.get) if langs else None
                ex_id = contracts.stable_hash(item["source_id"], round(t0, 3), round(t1, 3), cfg_hash)
                params = {"main_speaker_policy": ec.main_speaker, "main_speaker": main, "two_channel": two,
                          "span": [round(t0, 3), round(t1, 3)], "diarize_backend": diar, "asr_backend": asr,
                          "gain_db": item.get("gain_db")}
                examples.append(contracts.example_row(
                    example_id=ex_id, kind="real", language=language, duration_s=n / sr, sample_rate=sr,
                    num_samples=n, audio=encode_flac(audio, sr), words=wrows, segments=segs,
                    text_ch0=" ".join(w["word"] for w in ws if w["channel"] == 0),
                    text_ch1=" ".join(w["word"] for w in ws if w["channel"] == 1),
                    speakers=speakers, num_speakers=len(present), overlap_ratio=ov, speech_ratio=spr,
                    seed=int(item["seed"]), params=json.dumps(params, sort_keys=True),
                    source_ids=[item["source_id"]],
                    source_spans=[{"source_id": item["source_id"], "start_s": t0, "end_s": t1}],
                    config_hash=cfg_hash, pipeline_version=__version__))
        item["examples"] = examples
        self.counters.extra["examples"] = self.counters.extra.get("examples", 0) + len(examples)
        self.counters.extra["spans_without_speech"] = self.counters.extra.get("spans_without_speech", 0) + skipped
        item["source"] = contracts.source_row(
            source_id=item["source_id"], uri=item["uri"], kind="real", format=item.get("format"),
            orig_sample_rate=item.get("orig_sample_rate"), orig_channels=item.get("orig_channels"),
            duration_s=dur, bytes=item.get("bytes"), status="accepted" if examples else "rejected",
            num_examples=len(examples), work_key=item.get("work_key"), config_hash=cfg_hash)
        if not examples:
            reject(item, stage="assemble", reason="no_examples",
                   detail=f"{item['uri']}: no span with at least {ec.min_speech_s} s of transcribed speech")
        if not ec.keep_work:
            Path(item["work_path"]).unlink(missing_ok=True)
        return item

