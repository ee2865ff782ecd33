"""The synthesis job's pieces: work items from scripts, the stages that make examples, a summary.

`make_items` yields one work item per dialogue; `synthesis_stages(cfg)` returns
[SynthesizeStage, RoundTripStage] (the latter when synth.roundtrip.enabled); `summarize` and
`format_summary` report the measured turn-taking against the configured targets.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Iterator

import numpy as np
from tandem.pipelines.core.contracts import example_row, rejection_row, source_row, stable_hash, work_key
from tandem.pipelines.core.stage import Stage
from tandem.pipelines.core.text import cer
from tandem.pipelines.core.text import norm_text as normalize_text
from tandem.synth.scripts import ScriptError, builtin_scripts, iter_jsonl, script_hash, split_sentences

STAGE_NAME = "synthesize"
ROUNDTRIP_NAME = "roundtrip"


def _scfg(cfg: dict) -> dict:
    return cfg.get("synth") or {}


def dialogue_seed(job_seed: int, *key) -> int:
    """Per-dialogue seed derived from the job seed and the dialogue's identity (fits int64)."""
    return int(stable_hash("synth-seed", int(job_seed), *key, n=15), 16)


def _item(script: dict, uri: str, seed: int, cfg_hash: str) -> dict:
    sh = script_hash(script)
    return {"uri": uri, "kind": "synthetic", "work_key": work_key(stable_hash(sh, seed), cfg_hash),
            "seed": seed, "status": "ok", "rejections": [], "cfg_hash": cfg_hash, "script": script,
            # a synthetic source is one rendition: the script under one seed (the same script
            # rendered with another seed is different audio, not a duplicate)
            "source_id": stable_hash("rendition", sh, seed, n=32), "script_hash": sh,
            "language": script["language"]}


def _bad_item(uri: str, detail: str, key: str, seed: int, cfg_hash: str) -> dict:
    sid = stable_hash("bad-script", key)
    rej = rejection_row(uri=uri, stage="synth", filter="script", reason="bad_script", detail=detail,
                        source_id=sid, kind="synthetic", config_hash=cfg_hash)
    return {"uri": uri, "kind": "synthetic", "work_key": work_key(stable_hash(key, seed), cfg_hash), "seed": seed,
            "status": "rejected", "rejections": [rej], "cfg_hash": cfg_hash, "source_id": sid,
            "source": source_row(source_id=sid, uri=uri, kind="synthetic", format="jsonl", status="rejected",
                                 num_examples=0, config_hash=cfg_hash)}


def make_items(scripts: str | None, count: int, seed: int, languages: list[str], cfg: dict, cfg_hash: str,
               out_dir: str) -> Iterator[dict]:
    """One work item per dialogue (streamed).

    `scripts`: None (or "builtin") for `count` built-in dialogues; "llm" for `count` dialogues
    from the chat endpoint in synth.llm; else a JSONL file (all its lines when count <= 0, else
    the first `count`). A malformed line is a rejected item naming the file and line.
    `out_dir` is unused: synthesis writes nothing before the writer does.
    """
    scfg = _scfg(cfg)
    if scripts is None or scripts == "builtin":
        for s in builtin_scripts(count, seed, languages, scfg):
            yield _item(s, f"builtin:{s['dialogue_id']}", dialogue_seed(seed, s["dialogue_id"]), cfg_hash)
        return
    if scripts == "llm" or scripts.startswith("llm:"):
        from tandem.synth.llm import llm_scripts
        for i, (s, err) in enumerate(llm_scripts(count, seed, languages, scfg.get("llm") or {})):
            uri = f"llm:{(scfg.get('llm') or {}).get('url', '')}#{i}"
            if err is not None:
                yield _bad_item(uri, err, uri, dialogue_seed(seed, uri), cfg_hash)
            else:
                yield _item(s, f"{uri}:{s['dialogue_id']}", dialogue_seed(seed, script_hash(s)), cfg_hash)
        return
    for n, (line, s, err) in enumerate(iter_jsonl(scripts, languages)):
        if count > 0 and n >= count:
            return
        if err is not None:
            uri = f"{scripts}#line{line}"
            yield _bad_item(uri, err, f"{scripts}:{line}:{err}", dialogue_seed(seed, uri), cfg_hash)
        else:
            yield _item(s, f"{scripts}#{s['dialogue_id']}", dialogue_seed(seed, s["dialogue_id"], script_hash(s)),
                        cfg_hash)


# -- synthesis ----------------------------------------------------------------------------------

class SynthesizeStage(Stage):
    """Script -> cast voices -> TTS per sentence -> timeline -> two-channel mix -> augment ->
    one example row (FLAC audio, words per channel, params with every draw)."""

    name = STAGE_NAME
    reads = ("script", "seed", "cfg_hash")
    writes = ("examples", "source", "duration_s")
    uses_model = True

    def setup(self) -> None:
        from tandem.synth.tts.base import make_tts
        self.scfg = _scfg(self.cfg)
        self.sr = int(self.cfg.get("sample_rate", 24000))
        self.tts = make_tts(self.cfg)

    def _say(self, text: str, lang: str, voice):
        from tandem.synth.timeline import Utterance
        audio, sr, words = self.tts.synthesize(text, lang, voice=voice.name, pitch=voice.pitch, rate=voice.rate)
        return Utterance(text, len(audio) / sr, words, audio)

    def process(self, item: dict) -> dict:
        from tandem.pipelines.io.audio import encode_flac
        from tandem.synth.augment import augment_user_channel
        from tandem.synth.mix import overlap_figures, render
        from tandem.synth.phrasebook import BACKCHANNELS
        from tandem.synth.timeline import DEFAULTS as TL_DEFAULTS
        from tandem.synth.timeline import Turn, build_timeline
        from tandem.synth.voices import Voice, cast_voices

        from tandem import __version__

        script, seed = item["script"], int(item["seed"])
        lang = script["language"]
        sh = item.get("source_id") or script_hash(script)
        speakers = list(dict.fromkeys(t["speaker"] for t in script["turns"]))
        main = script.get("main_speaker") or speakers[0]
        speakers = [main] + [s for s in speakers if s != main]
        channels = {s: (0 if s == main else 1) for s in speakers}
        vcfg = self.scfg.get("voices") or {}
        voices = cast_voices(speakers, lang, np.random.default_rng([seed, 1]), self.scfg,
                             main_voice=(vcfg.get("main") or {}).get(lang) if vcfg.get("main") else None)
        for spk, h in (script.get("speakers") or {}).items():  # the script's own hints win
            v = voices[spk]
            voices[spk] = Voice(h.get("voice", v.name), int(h.get("pitch", v.pitch)), int(h.get("rate", v.rate)))
        bc_cache: dict = {}
        bank = (self.scfg.get("backchannels") or {}).get(lang) or BACKCHANNELS.get(lang) or BACKCHANNELS["en"]

        def backchannel(listener: str, rng: np.random.Generator):
            tok = bank[int(rng.integers(len(bank)))]
            if (listener, tok) not in bc_cache:
                bc_cache[(listener, tok)] = self._say(tok, lang, voices[listener])
            return bc_cache[(listener, tok)]

        tcfg = dict(TL_DEFAULTS)
        tcfg.update(self.scfg.get("timeline") or {})
        session = getattr(self.tts, "session", None)
        with (session() if session else contextlib.nullcontext()):  # a dialogue's audio depends on it alone
            turns = [Turn(t["speaker"], [self._say(s, lang, voices[t["speaker"]]) for s in split_sentences(t["text"])])
                     for t in script["turns"]]
            tl = build_timeline(turns, channels, np.random.default_rng([seed, 2]),
                                backchannel if tcfg["backchannel_prob"] > 0 else None, tcfg)
        audio = render(tl, self.sr, float(self.scfg.get("peak", 0.9)))
        aug: dict = {}
        acfg = self.scfg.get("augment") or {}
        if acfg.get("enabled", True):
            audio, aug = augment_user_channel(audio, self.sr, np.random.default_rng([seed, 3]),
                                              {k: v for k, v in acfg.items() if k != "enabled"})
        dur = audio.shape[1] / self.sr
        words = tl.words()
        ov_ratio, sp_ratio, flags = overlap_figures(words, dur)
        rows = [{"channel": w["channel"], "speaker": w["speaker"], "word": w["word"],
                 "start_s": round(w["start_s"], 4), "end_s": round(w["end_s"], 4), "score": 1.0, "overlap": f}
                for w, f in zip(words, flags)]
        text = {ch: " ".join(w["word"] for w in rows if w["channel"] == ch) for ch in (0, 1)}
        stats = tl.stats()
        params = {
            "script_id": sh, "dialogue_id": script["dialogue_id"], "style": script.get("style"),
            "tts": getattr(self.tts, "name", type(self.tts).__name__),
            "voices": {s: voices[s].as_dict() for s in speakers}, "channels": channels,
            "timeline": stats, "timeline_draws": tl.draws, "augment": aug,
            "targets": {k: tcfg[k] for k in ("gap_mean_s", "gap_std_s", "interruption_prob", "backchannel_prob")},
        }
        flac = encode_flac(audio, self.sr)
        key = stable_hash(sh, seed)
        ex = example_row(
            example_id=stable_hash(key, 0, item["cfg_hash"]), kind="synthetic", language=lang,
            duration_s=dur, sample_rate=self.sr, num_samples=int(audio.shape[1]), audio=flac, words=rows,
            text_ch0=text[0], text_ch1=text[1], speakers=speakers, num_speakers=len(speakers),
            overlap_ratio=ov_ratio, speech_ratio=sp_ratio, seed=seed,
            params=json.dumps(params, sort_keys=True, ensure_ascii=False), source_ids=[sh],
            config_hash=item["cfg_hash"], pipeline_version=__version__)
        item["examples"] = [ex]
        item["duration_s"] = dur
        item["source"] = source_row(source_id=sh, uri=item["uri"], kind="synthetic", format="script",
                                    orig_sample_rate=self.sr, orig_channels=2, duration_s=dur, bytes=len(flac),
                                    status="accepted", num_examples=1, work_key=item["work_key"],
                                    config_hash=item["cfg_hash"])
        return item


# -- round trip -----------------------------------------------------------------------------------

class RoundTripStage(Stage):
    """ASR each channel in the script's language and score it against the words actually said.

    `roundtrip_cer` is the worse (max) of the two channels, so an example passes a threshold only
    if both sides are intelligible; per-channel and mean CER go to `metrics`; the ASR segments go
    to `segments` with their channel."""

    name = ROUNDTRIP_NAME
    reads = ("examples",)
    writes = ("examples",)
    uses_model = True

    def setup(self) -> None:
        from tandem.pipelines.models.asr import load_asr
        self.asr = load_asr(self.cfg, device=self.device, threads=self.resources.threads)

    def process(self, item: dict) -> dict:
        from tandem.pipelines.io.audio import decode_flac
        for ex in item.get("examples") or []:
            audio, sr = decode_flac(ex["audio"])
            cers, segs = {}, []
            for ch in (0, 1):
                ref = ex[f"text_ch{ch}"] or ""
                hyps = []
                for t0, x in speech_chunks(audio[ch], sr, [w for w in ex["words"] if w["channel"] == ch]):
                    for s in self.asr.transcribe(x, sr, language=ex["language"]):
                        hyps.append(s["text"])
                        segs.append({"channel": ch, "start_s": t0 + s["start_s"], "end_s": t0 + s["end_s"],
                                     "text": s["text"], "language": s.get("language"),
                                     "language_prob": _f(s.get("language_prob")),
                                     "avg_logprob": _f(s.get("avg_logprob")),
                                     "no_speech_prob": _f(s.get("no_speech_prob")),
                                     "compression_ratio": _f(s.get("compression_ratio"))})
                cers[ch] = cer(ref, " ".join(hyps))
            ex["roundtrip_cer"] = max(cers.values())
            ex["segments"] = segs
            m = dict(ex.get("metrics") or {})
            m.update({"roundtrip_cer_ch0": cers[0], "roundtrip_cer_ch1": cers[1],
                      "roundtrip_cer_mean": (cers[0] + cers[1]) / 2})
            ex["metrics"] = m
        return item


def speech_chunks(x: np.ndarray, sr: int, words: list[dict], max_s: float = 28.0, pad_s: float = 0.25,
                  join_gap_s: float = 1.0) -> list[tuple[float, np.ndarray]]:
    """The channel's speech (from its known word times) as chunks of at most `max_s`, each
    (start time, audio): Whisper never sees the long silences of the listening side, where it
    hallucinates and wastes time. A chunk's segment times are exact from its start only where
    it holds one region; the CER does not need more."""
    regions: list[list[float]] = []
    for w in sorted(words, key=lambda w: w["start_s"]):
        s, e = max(0.0, w["start_s"] - pad_s), min(len(x) / sr, w["end_s"] + pad_s)
        if regions and s - regions[-1][1] < join_gap_s:
            regions[-1][1] = max(regions[-1][1], e)
        else:
            regions.append([s, e])
    out: list[tuple[float, np.ndarray]] = []
    parts: list[np.ndarray] = []
    start, size = 0.0, 0.0
    gap = np.zeros(int(0.3 * sr), dtype=np.float32)
    for s, e in regions:
        seg = x[int(s * sr): int(e * sr)]
        # a region longer than max_s is cut into max_s pieces
        for k in range(0, len(seg), int(max_s * sr)):
            piece = seg[k: k + int(max_s * sr)]
            if parts and size + len(piece) / sr > max_s:
                out.append((start, np.concatenate(parts)))
                parts, size = [], 0.0
            if not parts:
                start = s + k / sr
            parts += [piece, gap]
            size += len(piece) / sr + len(gap) / sr
    if parts:
        out.append((start, np.concatenate(parts)))
    return out


def _f(x) -> float:
    return float("nan") if x is None else float(x)


def synthesis_stages(cfg: dict) -> list[Stage]:
    """The synthesis chain: [SynthesizeStage, RoundTripStage (if synth.roundtrip.enabled)]."""
    stages: list[Stage] = [SynthesizeStage.from_config(cfg)]
    if (_scfg(cfg).get("roundtrip") or {}).get("enabled", True):
        stages.append(RoundTripStage.from_config(cfg))
    return stages


# -- summary --------------------------------------------------------------------------------------

def _q(x: list[float], q: float) -> float:
    return float(np.quantile(x, q)) if x else float("nan")


def summarize(example_rows: Iterable[dict]) -> dict:
    """Measured turn-taking over example rows (reads only `params`), with the configured targets."""
    offs, reg, ints, n_changes = [], [], 0, 0
    bcs = utts = 0
    targets: dict = {}
    n = 0
    for r in example_rows:
        p = r.get("params")
        p = json.loads(p) if isinstance(p, str) else (p or {})
        t = p.get("timeline")
        if not t:
            continue
        n += 1
        targets = targets or p.get("targets") or {}
        for o, i in zip(t["offsets_s"], t["interrupted"]):
            offs.append(o)
            n_changes += 1
            if i:
                ints += 1
            else:
                reg.append(o)
        bcs += t.get("backchannels", 0)
        utts += t.get("utterances", 0)
    overlaps = [-o for o in offs if o < 0]
    mu, sd = targets.get("gap_mean_s"), targets.get("gap_std_s")
    target_overlap = 0.5 * math.erfc(mu / sd / math.sqrt(2)) if mu is not None and sd else float("nan")
    return {
        "dialogues": n, "speaker_changes": n_changes,
        "gap_median_s": _q(offs, 0.5), "gap_iqr_s": _q(offs, 0.75) - _q(offs, 0.25),
        "overlap_share": len(overlaps) / n_changes if n_changes else float("nan"),
        "overlap_median_s": _q(overlaps, 0.5), "overlap_p90_s": _q(overlaps, 0.9),
        "overlap_under_500ms_share": (sum(o < 0.5 for o in overlaps) / len(overlaps)) if overlaps else float("nan"),
        "regular_gap_median_s": _q(reg, 0.5), "regular_gap_iqr_s": _q(reg, 0.75) - _q(reg, 0.25),
        "regular_overlap_share": (sum(o < 0 for o in reg) / len(reg)) if reg else float("nan"),
        "interruption_rate": ints / n_changes if n_changes else float("nan"),
        "backchannels": bcs, "utterances": utts,
        "backchannel_share": bcs / (bcs + utts) if bcs + utts else float("nan"),
        "target_gap_mean_s": mu, "target_gap_iqr_s": 1.349 * sd if sd else float("nan"),
        "target_overlap_share": target_overlap,
        "target_interruption_prob": targets.get("interruption_prob"),
        "target_backchannel_prob": targets.get("backchannel_prob"),
    }


def format_summary(summary: dict) -> str:
    """The summary as a few aligned lines for the end of `tandem synth`."""
    s = summary
    if not s.get("dialogues"):
        return "synth turn-taking: no dialogues"

    def ms(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{1000 * x:+.0f} ms"

    def pct(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"

    lines = [
        (f"synth turn-taking over {s['dialogues']} dialogues, {s['speaker_changes']} speaker changes "
        f"(measured | target)"),
        f"  gap median (regular changes)   {ms(s['regular_gap_median_s']):>9} | {ms(s['target_gap_mean_s'])}",
        f"  gap IQR (regular changes)      {ms(s['regular_gap_iqr_s']):>9} | {ms(s['target_gap_iqr_s'])}",
        f"  overlapping (regular changes)  {pct(s['regular_overlap_share']):>9} | {pct(s['target_overlap_share'])}",
        f"  interruption rate              {pct(s['interruption_rate']):>9} | {pct(s['target_interruption_prob'])}",
        (f"  all changes: gap median {ms(s['gap_median_s'])}, IQR {ms(s['gap_iqr_s'])}, "
        f"overlapping {pct(s['overlap_share'])}"),
        (f"  overlap duration: median {ms(s['overlap_median_s'])}, p90 {ms(s['overlap_p90_s'])}, "
        f"under 500 ms {pct(s['overlap_under_500ms_share'])}"),
        (f"  backchannels: {s['backchannels']} ({pct(s['backchannel_share'])} of utterances; Switchboard ~19%), "
        f"per-pause prob {s['target_backchannel_prob']}"),
    ]
    return "\n".join(lines)


__all__ = [
    "RoundTripStage",
    "ScriptError",
    "SynthesizeStage",
    "cer",
    "dialogue_seed",
    "format_summary",
    "make_items",
    "normalize_text",
    "summarize",
    "synthesis_stages",
]
