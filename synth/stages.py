"""The synthesis stages: SynthesizeStage (script -> two-channel example row) and RoundTripStage (ASR
of each channel scored against the words said)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import Counter

import numpy as np

from pipelines.core.contracts import example_row, source_row, stable_hash
from pipelines.core.stage import Resources, Stage
from pipelines.models.cache import ModelsParams
from synth.params import AugmentParams, LlmParams, SynthSection, TimelineParams, TtsParams, VoicesParams
from synth.scripts import script_hash, split_sentences

STAGE_NAME = "synthesize"


@dataclasses.dataclass(frozen=True)
class SynthParams:
    """What SynthesizeStage needs from the config (meanings in 20_synth.yaml), typed once here."""

    sample_rate: int
    peak: float
    tts: TtsParams
    voices: VoicesParams
    backchannels: dict[str, tuple[str, ...]]  # {language: tokens}
    timeline: TimelineParams
    augment: AugmentParams
    models: ModelsParams  # the model cache (the aligner and the Whisper word-time fallback)
    asr: object  # AsrParams: the Whisper fallback for word times
    languages: tuple
    llm: LlmParams  # the chat endpoint, for items planned from "llm" scripts
    best_of: int  # renditions per dialogue; the round trip keeps the lowest CER
    flac_level: int  # FLAC compression level 0-8

    @classmethod
    def from_config(cls, cfg: dict) -> SynthParams:
        from pipelines.core.config import setting
        from pipelines.models.asr import AsrParams
        s = SynthSection.from_config(cfg)
        return cls(sample_rate=int(setting(cfg, "sample_rate")), peak=s.peak, tts=s.tts, voices=s.voices,
                   backchannels=s.backchannels, timeline=s.timeline, augment=s.augment,
                   models=ModelsParams.from_config(cfg), asr=AsrParams.from_config(cfg),
                   languages=tuple(setting(cfg, "languages")), llm=s.llm, best_of=s.roundtrip.best_of,
                   flac_level=s.flac_level)


class SynthesizeStage(Stage):
    """Script -> cast voices -> TTS per sentence -> timeline -> two-channel mix -> augment ->
    one example row (FLAC audio, words per channel, params with every draw and the measured
    turn-taking)."""

    name = STAGE_NAME
    reads = ("seed", "cfg_hash")  # and "script", or "llm_request" to fetch it here
    writes = ("examples", "source", "duration_s")
    uses_model = True

    def __init__(self, params: SynthParams, *, resources: Resources | None = None):
        super().__init__(resources=resources)
        self.params = params

    @classmethod
    def from_config(cls, cfg: dict) -> SynthesizeStage:
        return cls(SynthParams.from_config(cfg), resources=Resources.for_stage(cfg, cls.name))

    def check(self) -> None:
        from synth.tts.registry import check_tts
        check_tts(self.params.tts, self.params.models, list(self.params.languages))
        if self.params.tts.backend == "piper":
            from synth.tts.piper import piper_voices, warped_names
            piper = self.params.tts.piper
            if len(warped_names(piper_voices(piper.voices), piper.warps)) < 2:
                import warnings
                warnings.warn("synth.tts.piper has one voice (one model, warps [1.0]): every speaker of a dialogue "
                              "will sound the same (they differ only in rate); list more Piper voices or warps",
                              stacklevel=2)

    # speaking ahead (run_items): a second engine speaks the next dialogue while this one is mixed
    _spare = None
    _ahead: dict | None = None  # the next dialogue's turns being spoken: key, engine, future
    _pool = None
    _next: dict | None = None

    def setup(self) -> None:
        self.tts = self._make_tts()

    def _make_tts(self):
        from synth.tts.registry import make_tts
        return make_tts(self.params.tts, self.params.sample_rate, self.params.models,
                        threads=self.resources.threads, asr_params=self.params.asr)

    def run_items(self, items: list[dict]) -> list[dict]:
        """Items in order. With an engine whose sessions run in their own process (espeak), the
        next dialogue's sentences are spoken by a second engine while this dialogue is timed,
        mixed, augmented and encoded: the two overlap instead of adding up. Each dialogue still
        gets a fresh session, so its bytes are the same as when it is made alone."""
        self.ensure_setup()
        items = list(items)  # scripts: small
        if len(items) < 2 or not getattr(self.tts, "parallel_sessions", False):
            return super().run_items(items)
        from concurrent.futures import ThreadPoolExecutor
        out = []
        with ThreadPoolExecutor(1, thread_name_prefix="tts-ahead") as self._pool:
            try:
                for i, it in enumerate(items):
                    self._next = items[i + 1] if i + 1 < len(items) else None
                    out.append(self(it))
            finally:
                self._next = None
                self._drop_ahead()
        self._pool = None
        return out

    def _cast(self, script: dict, seed: int) -> tuple[list[str], dict, dict]:
        """(speakers main first, speaker -> channel, speaker -> Voice), from the seed alone."""
        from synth.voices import Voice, cast_voices
        P = self.params
        speakers = list(dict.fromkeys(t["speaker"] for t in script["turns"]))
        main = script.get("main_speaker") or speakers[0]
        speakers = [main] + [s for s in speakers if s != main]
        channels = {s: (0 if s == main else 1) for s in speakers}
        voices = cast_voices(speakers, script["language"], np.random.default_rng([seed, 1]), P.voices,
                             main_voice=P.voices.main.get(script["language"]),
                             kind=getattr(self.tts, "voice_kind", "espeak"),
                             engine_voices=getattr(self.tts, "voices", None))
        for spk, h in (script.get("speakers") or {}).items():  # the script's own hints win
            v = voices[spk]
            voices[spk] = Voice(h.get("voice", v.name), int(h.get("pitch", v.pitch)), int(h.get("rate", v.rate)))
        return speakers, channels, voices

    @staticmethod
    def _say(tts, text: str, lang: str, voice):
        from synth.timeline import Utterance
        audio, sr, words = tts.synthesize(text, lang, voice=voice.name, pitch=voice.pitch, rate=voice.rate)
        return Utterance(text, len(audio) / sr, words, audio)

    def _speak_turns(self, tts, script: dict, voices: dict) -> list:
        from synth.timeline import Turn
        lang = script["language"]
        return [Turn(t["speaker"], [self._say(tts, s, lang, voices[t["speaker"]]) for s in split_sentences(t["text"])])
                for t in script["turns"]]

    def _session(self, tts, seed: int):
        """An entered session of `tts` (a dialogue's audio depends on that dialogue and `seed` alone)."""
        session = getattr(tts, "session", None)
        cm = session(seed) if session else contextlib.nullcontext()
        cm.__enter__()
        return cm

    def _start_ahead(self, busy) -> None:
        """Speak the next item's turns on the engine that `busy` (this item's) is not."""
        nxt = self._next
        if self._pool is None or nxt is None or "script" not in nxt or nxt.get("status") in ("rejected", "retry"):
            return
        if self._spare is None:
            self._spare = self._make_tts()
        tts = self._spare if busy is self.tts else self.tts

        def speak():  # any error here is the next item's: it speaks again in its own call and reports it
            seed = candidate_seed(int(nxt["seed"]), 0)
            voices = self._cast(nxt["script"], seed)[2]
            cm = self._session(tts, seed)
            try:
                return cm, self._speak_turns(tts, nxt["script"], voices)
            except BaseException:
                cm.__exit__(None, None, None)
                raise
        self._ahead = {"key": id(nxt), "tts": tts, "future": self._pool.submit(speak)}

    def _take_ahead(self, item: dict):
        """(engine, entered session, turns) spoken ahead for `item`, or None."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        try:
            cm, turns = ahead["future"].result()
        except Exception:  # noqa: BLE001 - spoken again in the item's own call, which reports the error
            return None
        if ahead["key"] != id(item):
            cm.__exit__(None, None, None)
            return None
        return ahead["tts"], cm, turns

    def _drop_ahead(self) -> None:
        self._take_ahead({})  # no item matches: its session is ended

    _vad = None

    def _channel_vad(self):
        if self._vad is None:
            from synth.audiotiming import ChannelVad
            self._vad = ChannelVad(threads=1)
        return self._vad

    def _free_tts(self):
        """An engine not busy speaking ahead."""
        return self._spare if self._ahead is not None and self._ahead["tts"] is self.tts else self.tts

    def process(self, item: dict) -> dict:
        P = self.params
        if "script" not in item:
            from synth.llm import LLMError, fetch_script
            try:
                item["script"] = fetch_script(item["llm_request"], P.llm, item.get("llm_cache"))
            except LLMError as e:
                return _bad_script(item, str(e))
        from synth.scripts import ScriptError, validate_script
        try:  # a bad script is the input's fault: rejected here, not retried as a stage error
            validate_script(item["script"], item.get("uri", "<script>"))
        except ScriptError as e:
            return _bad_script(item, str(e))
        script, seed = item["script"], int(item["seed"])
        sh = item.get("source_id") or script_hash(script)
        # best of N: N renditions (voices, timeline, augmentation from their own seeds; the first
        # is the item's seed, so N = 1 is the plain rendition); the round trip keeps the best
        item["examples"] = [self._render(item, script, candidate_seed(seed, k), k, sh) for k in range(P.best_of)]
        ex = item["examples"][0]
        item["duration_s"] = ex["duration_s"]
        item["source"] = source_row(source_id=sh, uri=item["uri"], kind="synthetic", format="script",
                                    orig_sample_rate=ex["sample_rate"], orig_channels=2, duration_s=ex["duration_s"],
                                    bytes=len(ex["audio"]), status="accepted", num_examples=1,
                                    work_key=item["work_key"], config_hash=item["cfg_hash"])
        return item

    def _render(self, item: dict, script: dict, seed: int, k: int, sh: str) -> dict:
        """One rendition of `script` under `seed`: the example row (candidate `k` of best-of-N)."""
        from pipelines.core.turntaking import measure
        from pipelines.io.audio import encode_flac
        from synth.audiotiming import audio_measures, sound_regions
        from synth.augment import augment_user_channel
        from synth.mix import overlap_figures, render
        from synth.phrasebook import BACKCHANNELS
        from synth.timeline import build_timeline
        from tandem import __version__
        P = self.params
        lang = script["language"]
        speakers, channels, voices = self._cast(script, seed)
        bc_cache: dict = {}
        bank = P.backchannels.get(lang) or BACKCHANNELS.get(lang) or BACKCHANNELS["en"]

        def backchannel(listener: str, rng: np.random.Generator):
            tok = bank[int(rng.integers(len(bank)))]
            if (listener, tok) not in bc_cache:
                bc_cache[(listener, tok)] = self._say(tts, tok, lang, voices[listener])
            return bc_cache[(listener, tok)]

        tc = P.timeline
        bc_on = tc.backchannel_prob > 0 or tc.backchannel_overlap_prob > 0
        got = self._take_ahead(item) if k == 0 else None
        if got is None:
            tts = self._free_tts()
            cm = self._session(tts, seed)
        else:
            tts, cm, turns = got
        try:
            if got is None:
                turns = self._speak_turns(tts, script, voices)
            if k == 0:
                self._start_ahead(tts)
            tl = build_timeline(turns, channels, np.random.default_rng([seed, 2]), backchannel if bc_on else None, tc)
        finally:
            cm.__exit__(None, None, None)
        sr = P.sample_rate
        audio = render(tl, sr, P.peak)
        # turn-taking as heard: VAD on each rendered channel before augmentation adds sound
        vad = self._channel_vad()
        regions = vad(audio, sr)
        sound = [sound_regions(audio[c], sr) for c in (0, 1)]
        aug: dict = {}
        if P.augment.enabled:
            audio, aug = augment_user_channel(audio, sr, np.random.default_rng([seed, 3]), P.augment)
        aug_regions = [regions[0], vad.channel(audio[1], sr)] if aug else regions
        dur = audio.shape[1] / sr
        words = tl.words()
        ov_ratio, sp_ratio, flags = overlap_figures(words, dur)
        tts_name = getattr(self.tts, "name", type(self.tts).__name__)
        ids = voice_speaker_ids(speakers, voices, tts_name)
        rows = [{"channel": w["channel"], "speaker": ids[w["speaker"]], "word": w["word"],
                 "start_s": round(w["start_s"], 4), "end_s": round(w["end_s"], 4),
                 "score": float(w.get("score", 1.0)), "overlap": f}
                for w, f in zip(words, flags)]
        text = {ch: " ".join(w["word"] for w in rows if w["channel"] == ch) for ch in (0, 1)}
        stats = tl.stats()
        tt = measure(rows)
        tt["backchannels"] = stats["backchannels"]
        heard = audio_measures(rows, regions, aug_regions, aug, sound)
        heard["turn_taking_audio"]["backchannels"] = stats["backchannels"]
        params = {
            "script_id": sh, "dialogue_id": script["dialogue_id"], "style": script.get("style"),
            "tts": tts_name, "speaker_ids": ids,
            "word_times": getattr(self.tts, "word_times", "engine"),
            "distinct_voices": len({v.name for v in voices.values()}) == len(voices),
            "voices": {s: voices[s].as_dict() for s in speakers}, "channels": channels,
            "timeline": stats, "timeline_draws": tl.draws, "augment": aug, "turn_taking": tt, **heard,
            "targets": {k: getattr(tc, k) for k in ("gap_mean_s", "gap_std_s", "interruption_prob",
                                                    "backchannel_prob")},
        }
        flac = encode_flac(audio, sr, P.flac_level)
        key = stable_hash(sh, int(item["seed"]))
        return example_row(
            example_id=stable_hash(key, k, item["cfg_hash"]), kind="synthetic", language=lang,
            duration_s=dur, sample_rate=sr, num_samples=int(audio.shape[1]), audio=flac, words=rows,
            text_ch0=text[0], text_ch1=text[1], speakers=[ids[s] for s in speakers], num_speakers=len(speakers),
            overlap_ratio=ov_ratio, speech_ratio=sp_ratio, seed=seed,
            params=json.dumps(params, sort_keys=True, ensure_ascii=False), source_ids=[sh],
            config_hash=item["cfg_hash"], pipeline_version=__version__)


def voice_speaker_ids(roles: list[str], voices: dict, tts: str) -> dict[str, str]:
    """Speaker ids of a dialogue's roles (A, B): `<tts>:<voice>`. The voice is what is heard as the
    speaker, so one voice in many dialogues is one speaker and a split by speaker id holds voices
    out (ids scoped by dialogue would put every voice on both sides). Two roles cast with one
    voice (a bank of one) stay two ids, `<tts>:<voice>#<role>`. A voice that is a file (a model, a
    clip) goes by its file name, so ids do not depend on where the bank lies."""
    from pathlib import PurePath
    base = {r: f"{tts}:{'_'.join(PurePath(str(voices[r].name)).name.split())}" for r in roles}
    n = Counter(base.values())
    return {r: b if n[b] == 1 else f"{b}#{r}" for r, b in base.items()}


def _bad_script(item: dict, detail: str) -> dict:
    """The dialogue's script could not be had: a rejected item with its source row."""
    from pipelines.core.contracts import rejection_row
    sid = item["source_id"]
    item["status"] = "rejected"
    item.setdefault("rejections", []).append(rejection_row(
        uri=item["uri"], stage="synth", filter="script", reason="bad_script", detail=detail, source_id=sid,
        kind="synthetic", config_hash=item["cfg_hash"]))
    item["source"] = source_row(source_id=sid, uri=item["uri"], kind="synthetic", format="llm", status="rejected",
                                num_examples=0, config_hash=item["cfg_hash"])
    return item


def candidate_seed(seed: int, k: int) -> int:
    """Seed of rendition `k` of a dialogue (best of N): the dialogue's own seed for k = 0."""
    return int(seed) if k == 0 else int(stable_hash("best-of", int(seed), k, n=15), 16)

