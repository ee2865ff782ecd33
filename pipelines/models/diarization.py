"""Speaker diarization: who speaks when, through pyannote.audio's own pipeline.

Both backends run `pyannote.audio.pipelines.SpeakerDiarization` (sliding-window segmentation,
per-(chunk, local speaker) embeddings, clustering, reconstruction), fed in-memory waveforms:
- `embedded` (offline default): the pyannote segmentation model bundled with whisperx and
  resemblyzer's bundled speaker encoder (`pyannote_parts.ResemblyzerEmbedding`), pyannote's
  agglomerative clustering on recording-centred embeddings after a one-speaker test
  (`pyannote_parts.CenteredAgglomerativeClustering`), a neutral PLDA (unused by it).
- `pyannote`: `Pipeline.from_pretrained` on a hub id (pyannote/speaker-diarization-community-1,
  token from the environment, files in the model cache) or a local pipeline directory.

A recording longer than `block_s` is diarized block by block (memory bounded by one block);
blocks' speakers are linked by the cosine distance of their centroid embeddings.

Turns are exclusive (one speaker per instant: the window pass, or pyannote's exclusive view) plus,
with `keep_overlap`, overlap turns (`overlap: True`) where the segmentation model hears a second
speaker (pipelines/models/overlap.py); the two-channel split puts those stretches on both channels.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIAR_SR = 16000


@dataclass(frozen=True)
class DiarizeParams:
    """The `diarize` config section (meanings in pipelines/core/defaults/10_curate.yaml)."""

    backend: str
    pipeline: str
    hf_token_env: str
    min_speakers: int
    max_speakers: int
    num_speakers: int | None
    segmentation_batch_size: int
    embedding_batch_size: int
    block_s: float
    link_threshold: float
    step_s: float
    embed_max_s: float
    embed_level_dbfs: float | None
    onset: float
    min_duration_off: float
    exclude_overlap: bool
    clustering_method: str
    clustering_threshold: float
    min_cluster_size: int
    recentre_iterations: int
    single_speaker_distance: float
    local_pair_distance: float
    reassign_window_s: float
    reassign_hop_s: float
    keep_overlap: bool
    overlap_onset: float
    min_overlap_s: float
    cache_dir: str | None = None

    def __post_init__(self):
        if self.backend not in PIPELINES:
            raise ValueError(f"diarize.backend {self.backend!r}: expected one of {', '.join(map(repr, PIPELINES))}")
        if not 1 <= self.min_speakers <= self.max_speakers:
            raise ValueError(f"diarize: need 1 <= min_speakers <= max_speakers, got "
                             f"{self.min_speakers}, {self.max_speakers}")
        if self.embed_max_s < 0:
            raise ValueError(f"diarize.embed_max_s must be >= 0 (0: no cap), got {self.embed_max_s}")


def _missing(p: DiarizeParams, why: str):
    from pipelines.models.registry import ModelMissing
    return ModelMissing(
        f"diarization pipeline {p.pipeline!r} could not be loaded ({why}). To provide it: accept its "
        f"terms on huggingface.co, export {p.hf_token_env}=<token> and prepare the model cache "
        "(tandem models fetch), or set diarize.pipeline to a local pipeline directory (config.yaml "
        "and its checkpoints), or use diarize.backend=embedded (offline)")


def load_pretrained(p: DiarizeParams):
    """pyannote's `Pipeline.from_pretrained` on p.pipeline; ModelMissing (how to fix) on failure."""
    from pyannote.audio import Pipeline
    from pipelines.models.pyannote_parts import no_telemetry
    no_telemetry()
    src = p.pipeline
    local = Path(src).expanduser()
    if local.exists() or src.startswith((".", "/", "~")):
        if not (local / "config.yaml").is_file() and not local.is_file():
            raise _missing(p, f"{local}: no config.yaml there")
        src = str(local)
    token = os.environ.get(p.hf_token_env) or None
    try:
        pipe = Pipeline.from_pretrained(src, token=token, cache_dir=p.cache_dir)
    except Exception as e:  # hub, network, gated access, bad checkpoint: all say how to fix
        raise _missing(p, f"{type(e).__name__}: {e}") from e
    if pipe is None:  # pyannote returns None when the hub refuses (gated, no token, offline)
        raise _missing(p, "the hub gave nothing: gated model without an accepted token, or offline")
    return pipe


def build_embedded(p: DiarizeParams):
    """SpeakerDiarization over the bundled segmentation model and speaker encoder (offline)."""
    from pipelines.models.pyannote_parts import (
        EmbeddedSpeakerDiarization,
        ResemblyzerEmbedding,
        neutral_plda,
        no_telemetry,
    )
    from pipelines.models.registry import resemblyzer_path, whisperx_segmentation_path
    no_telemetry()
    seg = str(whisperx_segmentation_path())
    emb = ResemblyzerEmbedding.pretrained(resemblyzer_path())
    emb.max_frames = round(p.embed_max_s * 100)  # the encoder's mel frames are 10 ms
    emb.level_dbfs = p.embed_level_dbfs
    pipe = EmbeddedSpeakerDiarization(
        segmentation=seg, segmentation_step=p.step_s / 5.0,  # the bundled model's windows are 5 s
        embedding=emb, embedding_exclude_overlap=p.exclude_overlap, plda=neutral_plda(emb.dimension))
    pipe.instantiate({
        "segmentation": {"threshold": p.onset, "min_duration_off": p.min_duration_off},
        "clustering": {"method": p.clustering_method, "threshold": p.clustering_threshold,
                       "min_cluster_size": p.min_cluster_size,
                       "single_speaker_distance": p.single_speaker_distance,
                       "local_pair_distance": p.local_pair_distance}})
    pipe.clustering.recentre_iterations = p.recentre_iterations
    pipe.encoder = emb  # for the window reassignment pass (Diarizer.reassign)
    return pipe


# diarize.backend -> the pyannote SpeakerDiarization pipeline it builds: the one place naming them
PIPELINES = {"embedded": build_embedded, "pyannote": load_pretrained}


def _turns(ann) -> list[tuple[float, float, str]]:
    return [(float(s.start), float(s.end), str(lab)) for s, _, lab in ann.itertracks(yield_label=True)]


def read_block(path: str, start_s: float, dur_s: float) -> np.ndarray:
    """[start, start+dur) of a file as 16 kHz mono float32, read by seeking."""
    import soundfile as sf
    import soxr
    with sf.SoundFile(path) as f:
        f.seek(min(f.frames, round(start_s * f.samplerate)))
        x = f.read(round(dur_s * f.samplerate), dtype="float32", always_2d=True).mean(axis=1)
        sr = f.samplerate
    return soxr.resample(x, sr, DIAR_SR).astype(np.float32) if sr != DIAR_SR else x


def file_duration(path: str) -> float:
    import soundfile as sf
    try:
        info = sf.info(path)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as audio ({type(e).__name__}: {e})") from e
    return info.frames / info.samplerate


class Diarizer:
    """A loaded pyannote diarization pipeline applied to files, block by block, in memory."""

    def __init__(self, pipeline, params: DiarizeParams, device: str = "cpu"):
        import torch
        self.p = params
        self.pipeline = pipeline
        self.pipeline.to(torch.device(device))
        # batch sizes are public knobs of SpeakerDiarization (pyannote's defaults are 1)
        if hasattr(pipeline, "segmentation_batch_size"):
            pipeline.segmentation_batch_size = params.segmentation_batch_size
        if hasattr(pipeline, "embedding_batch_size"):
            pipeline.embedding_batch_size = params.embedding_batch_size
        if hasattr(pipeline, "speaker_count"):  # SpeakerDiarization's counting step, ours for both backends
            import functools

            from pipelines.models.pyannote_parts import overlap_speaker_count
            pipeline.speaker_count = functools.partial(overlap_speaker_count, overlap_onset=params.overlap_onset)

    @classmethod
    def load(cls, params: DiarizeParams, device: str = "cpu") -> Diarizer:
        pipe = PIPELINES[params.backend](params)
        return cls(pipe, params, device)

    def _speaker_kw(self) -> dict:
        if self.p.num_speakers:
            return {"num_speakers": int(self.p.num_speakers)}
        return {"min_speakers": self.p.min_speakers, "max_speakers": self.p.max_speakers}

    def diarize_waveform(self, wav: np.ndarray, uri: str = "audio", offset_s: float = 0.0):
        """Turns [(start_s, end_s, local label, overlap)] and {local label: centroid} of one block:
        the exclusive turns, then (keep_overlap) the overlap turns of the full view."""
        import torch
        from pipelines.models.overlap import clip_turns, exclusive_of, overlap_turns
        f = {"waveform": torch.from_numpy(np.ascontiguousarray(wav, np.float32))[None],
             "sample_rate": DIAR_SR, "uri": uri}
        out = self.pipeline(f, **self._speaker_kw())
        ann = getattr(out, "speaker_diarization", out)
        labels = ann.labels()
        emb = getattr(out, "speaker_embeddings", None)
        cents = {lab: np.asarray(emb[i], np.float64) for i, lab in enumerate(labels)} if emb is not None else {}
        dur = len(wav) / DIAR_SR
        full = clip_turns(_turns(ann), dur)  # pyannote's padded last chunk can run past the end
        if getattr(self.pipeline, "encoder", None) is not None and self.p.reassign_window_s > 0:
            excl = self.reassign(full, wav)  # one label per frame
        else:
            ex = getattr(out, "exclusive_speaker_diarization", None)
            excl = clip_turns(_turns(ex), dur) if ex is not None else exclusive_of(full, dur)
        ov = overlap_turns(excl, full, dur, self.p.min_overlap_s) if self.p.keep_overlap else []
        return ([(offset_s + s, offset_s + e, lab, False) for s, e, lab in excl]
                + [(offset_s + s, offset_s + e, lab, True) for s, e, lab in ov]), cents

    def reassign(self, turns: list[tuple[float, float, str]], wav: np.ndarray) -> list[tuple[float, float, str]]:
        """Second pass over the speech found (embedded backend): each window of reassign_window_s
        (hop reassign_hop_s) is embedded whole and given the nearest speaker centroid (cosine,
        recording-centred as in the clustering), and each 10 ms frame the label most of its windows
        vote for. The segmentation model tracks at most 3 local speakers per 5 s chunk and often
        lets one local speaker span two similar voices; the chunk then goes to one cluster whole.
        Figures in the defaults (diarize.reassign_window_s)."""
        enc = getattr(self.pipeline, "encoder", None)
        win, hop = self.p.reassign_window_s, self.p.reassign_hop_s
        labels = sorted({lab for _, _, lab in turns})
        if enc is None or win <= 0 or len(labels) < 2:
            return turns
        import torch
        fr = 0.01
        n = int(np.ceil(len(wav) / DIAR_SR / fr))
        cur = np.full(n, -1)  # current label per frame (-1: no speech), longest turn wins ties
        for s, e, lab in sorted(turns, key=lambda t: t[0] - t[1]):
            a, b = int(s / fr), min(n, int(np.ceil(e / fr)))
            cur[a:b][cur[a:b] < 0] = labels.index(lab)
        wins = []
        for s, e, _ in turns:  # windows inside turns; a turn shorter than half a window has none
            t = s
            while t + win / 2 <= e:
                wins.append((t, min(t + win, e)))
                t += hop
        wins = sorted(set(wins))
        if len(wins) < 2:
            return turns
        L = int(win * DIAR_SR)
        dev = next(enc.parameters()).device
        bs = max(1, self.p.embedding_batch_size)
        parts = []
        for i0 in range(0, len(wins), bs):  # windows cut batch by batch: memory of one batch
            part = wins[i0:i0 + bs]
            x = np.zeros((len(part), 1, L), np.float32)
            w = np.zeros((len(part), 100), np.float32)  # activity weights: the window's real audio
            for i, (a, b) in enumerate(part):
                seg = wav[int(a * DIAR_SR):int(b * DIAR_SR)]
                x[i, 0, :len(seg)] = seg
                w[i, :max(1, int(100 * len(seg) / L))] = 1.0
            with torch.no_grad():
                parts.append(enc(torch.from_numpy(x).to(dev), torch.from_numpy(w).to(dev)).cpu().numpy())
        emb = np.concatenate(parts)
        ok = np.all(np.isfinite(emb), axis=1)
        if ok.sum() < 2:
            return turns
        emb = emb - emb[ok].mean(axis=0)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12
        own = np.array([np.bincount(cur[int(a / fr):int(b / fr)][cur[int(a / fr):int(b / fr)] >= 0],
                                    minlength=len(labels)).argmax() for a, b in wins])
        cents = np.zeros((len(labels), emb.shape[1]))
        for k in range(len(labels)):
            m = ok & (own == k)
            cents[k] = emb[m].mean(axis=0) if m.any() else np.nan
        has = np.all(np.isfinite(cents), axis=1)
        if has.sum() < 2:
            return turns
        cents /= np.linalg.norm(cents, axis=1, keepdims=True) + 1e-12
        sim = np.where(has[None], emb @ np.nan_to_num(cents).T, -np.inf)
        new = np.where(ok, sim.argmax(axis=1), own)
        votes = np.zeros((n + 1, len(labels)))
        for (a, b), k in zip(wins, new):
            votes[min(n, int(a / fr)), k] += 1
            votes[min(n, int(np.ceil(b / fr))), k] -= 1
        votes = np.cumsum(votes, axis=0)[:n]
        lab = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), cur)
        lab[cur < 0] = -1  # speech/non-speech stays as the pipeline found it
        out = []
        for s, e, _ in turns:  # each turn split where its frames' labels change; overlaps kept
            a, b = int(s / fr), min(n, max(int(s / fr) + 1, int(np.ceil(e / fr))))
            seg = lab[a:b]
            cuts = [0] + [i for i in range(1, len(seg)) if seg[i] != seg[i - 1]] + [len(seg)]
            for i, j in itertools.pairwise(cuts):
                if seg[i] >= 0:
                    out.append((max(s, (a + i) * fr), min(e, (a + j) * fr), labels[seg[i]]))
        merged: list[list] = []  # one speaker's touching pieces (from overlapping turns) joined
        for s, e, k in sorted(out, key=lambda t: (t[2], t[0])):
            if merged and merged[-1][2] == k and s <= merged[-1][1] + 1e-6:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e, k])
        return sorted((s, e, k) for s, e, k in merged)

    def __call__(self, path: str, speech: list[list[float]] | None = None, seed: int = 0) -> list[dict]:
        """Speaker turns of a file: [{start_s, end_s, speaker, overlap}], speakers named by first
        appearance; overlap turns lie inside another speaker's exclusive turns.
        `speech` (VAD regions) and `seed` are unused: the pipeline finds speech itself and is
        deterministic."""
        total = file_duration(path)
        block = float(self.p.block_s)
        nblocks = max(1, int(np.ceil(total / block - 1e-9)))
        turns: list[tuple[float, float, str, bool]] = []
        glob: list[np.ndarray] = []  # running centroid of each global speaker
        weight: list[float] = []
        for b in range(nblocks):
            t0 = b * block
            wav = read_block(path, t0, min(block, total - t0))
            if len(wav) < DIAR_SR // 10:
                continue
            bt, cents = self.diarize_waveform(wav, Path(path).stem, t0)
            mapping = self._link(bt, cents, glob, weight, b)
            turns += [(s, e, mapping[lab], ov) for s, e, lab, ov in bt]
        turns.sort()
        names: dict[str, str] = {}
        out = []
        for s, e, g, ov in turns:
            names.setdefault(g, f"SPEAKER_{len(names):02d}")
            out.append({"start_s": round(s, 3), "end_s": round(e, 3), "speaker": names[g], "overlap": ov})
        return out

    def _link(self, bt, cents, glob, weight, b) -> dict[str, str]:
        """Local speakers of a block -> global ids: the nearest global centroid when its cosine
        distance is under link_threshold (each global id taken once per block), else a new one."""
        own: dict[str, float] = {}
        both: dict[str, float] = {}
        for s, e, lab, ov in bt:
            (both if ov else own)[lab] = (both if ov else own).get(lab, 0.0) + e - s
        # a speaker's own speech weighs; overlap only for a label heard nowhere else
        talk = {lab: own.get(lab) or both[lab] for lab in {**both, **own}}
        mapping: dict[str, str] = {}
        taken: set[int] = set()
        for lab in sorted(talk, key=lambda k: -talk[k]):
            c = cents.get(lab)
            ok = c is not None and bool(np.all(np.isfinite(c))) and float(np.linalg.norm(c)) > 0
            best, dist = None, np.inf
            if ok:
                c = c / np.linalg.norm(c)
                for i, g in enumerate(glob):
                    if g is not None and i not in taken:
                        d = 1.0 - float(c @ g) / float(np.linalg.norm(g))
                        if d < dist:
                            best, dist = i, d
            if best is not None and dist < self.p.link_threshold:
                glob[best] = glob[best] + talk[lab] * c
                weight[best] += talk[lab]
            else:
                glob.append(talk[lab] * c if ok else None)  # a speaker without a centroid never links
                weight.append(talk[lab])
                best = len(glob) - 1
            taken.add(best)
            mapping[lab] = f"G{best}"
        return mapping
