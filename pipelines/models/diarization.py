"""Speaker diarization: who speaks when.

Backends (cfg["diarize"]["backend"]):
- `embedded` (offline default): the pyannote segmentation model bundled with whisperx gives up to
  three local speakers per 5 s window; resemblyzer's bundled VoiceEncoder embeds each local
  speaker; agglomerative clustering links local speakers across windows, the speaker count chosen
  by silhouette over k in [min_speakers, max_speakers]; window activations are averaged per global
  speaker and thresholded into turns.
- `pyannote`: the pyannote.audio speaker-diarization pipeline from the hub (HF token from env).
"""

from __future__ import annotations

import os

import numpy as np
from tandem.pipelines.core.config import section

SEG_SR = 16000


def _diar_cfg(cfg: dict) -> dict:
    return section(cfg, "diarize")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs where mask is True."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def choose_clusters(emb: np.ndarray, dc: dict, seed: int = 0) -> np.ndarray:
    """Cluster unit-norm embeddings with average-linkage (cosine) and pick the speaker count.

    One speaker when the last merge of the tree is closer than `single_speaker_distance`;
    otherwise the smallest k in [min, max] whose cosine silhouette is within `silhouette_margin`
    of the best (overlapping windows make tight sub-clusters of one voice; parsimony stops them
    from becoming speakers).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import silhouette_score
    n = len(emb)
    if n < 2:
        return np.zeros(n, int)
    Z = linkage(emb, method="average", metric="cosine")
    fixed = dc.get("num_speakers")
    if fixed:
        return fcluster(Z, int(fixed), "maxclust") - 1
    lo = max(1, int(dc["min_speakers"]))
    hi = min(int(dc["max_speakers"]), n - 1)
    if lo <= 1 and (hi < 2 or Z[-1, 2] < float(dc["single_speaker_distance"])):
        return np.zeros(n, int)
    scores = {}
    for k in range(max(2, lo), hi + 1):
        lab = fcluster(Z, k, "maxclust") - 1
        if len(set(lab)) == k:
            scores[k] = (float(silhouette_score(emb, lab, metric="cosine")), lab)
    if not scores:
        return np.zeros(n, int)
    best = max(s for s, _ in scores.values())
    k = min(k for k, (s, _) in scores.items() if s >= best - float(dc["silhouette_margin"]))
    return scores[k][1]


class EmbeddedDiarizer:
    """Offline diarization from bundled models (see module doc)."""

    def __init__(self, dc: dict, device: str = "cpu"):
        import torch
        from pyannote.audio import Model
        from resemblyzer import VoiceEncoder
        from tandem.pipelines.models.registry import resemblyzer_path, whisperx_segmentation_path
        self.dc = dc
        self.device = torch.device(device)
        self.seg = Model.from_pretrained(str(whisperx_segmentation_path())).to(self.device).eval()
        self.chunk_s = float(self.seg.specifications.duration)
        self.enc = VoiceEncoder(device=device, weights_fpath=resemblyzer_path(), verbose=False)

    # -- steps ---------------------------------------------------------------------------------
    def _segment(self, chunks: list[np.ndarray]) -> np.ndarray:
        import torch
        x = torch.from_numpy(np.stack(chunks)[:, None]).to(self.device)
        with torch.inference_mode():
            return self.seg(x).float().cpu().numpy()  # [B, frames, 3]

    def _embed(self, wav: np.ndarray) -> np.ndarray:
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram
        mel = wav_to_mel_spectrogram(wav)
        with torch.inference_mode():
            e = self.enc(torch.from_numpy(mel[None]).float().to(self.device))
        return e[0].cpu().numpy()

    def _chunks(self, path: str, speech: list[list[float]] | None):
        """(start_s, 16 kHz mono chunk) for every window that touches speech, read by seeking."""
        import soundfile as sf
        import soxr
        step, dur = float(self.dc["step_s"]), self.chunk_s
        with sf.SoundFile(path) as f:
            sr, total = f.samplerate, f.frames
            length = total / sr
            n = max(1, int(np.ceil(max(0.0, length - dur) / step)) + 1)
            sp = np.asarray(speech or [[0.0, length]], float)
            for i in range(n):
                t0 = i * step
                if not np.any((sp[:, 0] < t0 + dur) & (sp[:, 1] > t0)):
                    continue
                f.seek(int(t0 * sr))
                x = f.read(int(dur * sr), dtype="float32", always_2d=True).mean(axis=1)
                if sr != SEG_SR:
                    x = soxr.resample(x, sr, SEG_SR).astype(np.float32)
                want = int(dur * SEG_SR)
                x = np.pad(x, (0, max(0, want - len(x))))[:want]
                yield t0, x

    def __call__(self, path: str, speech: list[list[float]] | None = None, seed: int = 0) -> list[dict]:
        dc = self.dc
        onset = float(dc["onset"])
        starts, acts, emb, owner, dur = [], [], [], [], []  # owner: (chunk index, local speaker)
        batch: list[tuple[float, np.ndarray]] = []

        def flush():
            a = self._segment([x for _, x in batch])
            for (t0, x), act in zip(batch, a):
                ci = len(starts)
                starts.append(t0)
                acts.append(act.astype(np.float16))
                nf = act.shape[0]
                on = act > onset
                for k in range(act.shape[1]):
                    alone = on[:, k] & (on.sum(1) == 1)
                    mask = alone if alone.sum() * self.chunk_s / nf >= float(dc["min_embed_s"]) else on[:, k]
                    secs = mask.sum() * self.chunk_s / nf
                    if secs < float(dc["min_embed_s"]):
                        continue
                    samp = np.repeat(mask, int(np.ceil(len(x) / nf)))[: len(x)]
                    emb.append(self._embed(x[samp]))
                    owner.append((ci, k))
                    dur.append(secs)
            batch.clear()

        for t0, x in self._chunks(path, speech):
            batch.append((t0, x))
            if len(batch) >= int(dc["batch_size"]):
                flush()
        if batch:
            flush()
        if not emb:
            return []
        E = np.stack(emb)
        E /= np.linalg.norm(E, axis=1, keepdims=True) + 1e-9
        D = np.asarray(dur)
        labels = self._cluster(E, D, seed)
        return self._reconstruct(starts, acts, owner, labels)

    def _cluster(self, E: np.ndarray, D: np.ndarray, seed: int) -> np.ndarray:
        """Fit on long-enough local speakers (a seeded subsample when many), assign the rest to
        the nearest centroid; clusters holding under `min_cluster_share` of speech are absorbed."""
        dc = self.dc
        fit = np.flatnonzero(D >= float(dc["min_fit_s"]))
        if len(fit) < 2:
            fit = np.arange(len(E))
        if len(fit) > int(dc["max_fit"]):
            fit = np.sort(np.random.default_rng(seed).choice(fit, int(dc["max_fit"]), replace=False))
        lab_fit = choose_clusters(E[fit], dc, seed)
        k = lab_fit.max() + 1
        share = np.array([D[fit][lab_fit == i].sum() for i in range(k)]) / D[fit].sum()
        keep = np.flatnonzero(share >= float(dc["min_cluster_share"]))
        keep = keep if len(keep) else np.arange(k)
        cent = np.stack([E[fit][lab_fit == i].mean(0) for i in keep])
        cent /= np.linalg.norm(cent, axis=1, keepdims=True)
        labels = np.argmax(E @ cent.T, axis=1)
        _, labels = np.unique(labels, return_inverse=True)
        return labels

    def _reconstruct(self, starts, acts, owner, labels) -> list[dict]:
        nf = acts[0].shape[0]
        fr = self.chunk_s / nf
        k = int(labels.max()) + 1
        total = int(np.ceil((starts[-1] + self.chunk_s) / fr)) + 1
        score = np.zeros((total, k), np.float32)
        count = np.zeros(total, np.float32)
        glob: dict[int, dict[int, int]] = {}
        for (ci, lk), g in zip(owner, labels):
            glob.setdefault(ci, {})[lk] = int(g)
        for ci, (t0, act) in enumerate(zip(starts, acts)):
            i0 = round(t0 / fr)
            n = min(nf, total - i0)
            count[i0:i0 + n] += 1
            per: dict[int, np.ndarray] = {}
            for lk, g in glob.get(ci, {}).items():
                # two local speakers mapped to one global speaker: take the stronger
                a = act[:n, lk].astype(np.float32)
                per[g] = np.maximum(per[g], a) if g in per else a
            for g, a in per.items():
                score[i0:i0 + n, g] += a
        avg = score / np.maximum(count, 1)[:, None]
        onset = float(self.dc["onset"])
        turns = []
        gap = round(float(self.dc["fill_gap_s"]) / fr)
        for g in range(k):
            mask = avg[:, g] > onset
            runs = _runs(mask)
            merged: list[list[int]] = []
            for a, b in runs:
                if merged and a - merged[-1][1] <= gap:
                    merged[-1][1] = b
                else:
                    merged.append([a, b])
            for a, b in merged:
                if (b - a) * fr >= float(self.dc["min_turn_s"]):
                    turns.append({"start_s": round(a * fr, 3), "end_s": round(b * fr, 3), "g": g})
        turns.sort(key=lambda t: t["start_s"])
        # name speakers by first appearance so labels are stable across runs
        names: dict[int, str] = {}
        for t in turns:
            names.setdefault(t["g"], f"SPEAKER_{len(names):02d}")
            t["speaker"] = names[t.pop("g")]
        return turns


class PyannoteDiarizer:
    """pyannote.audio's hub pipeline (production); fails offline with ModelMissing."""

    def __init__(self, dc: dict, device: str = "cpu"):
        from tandem.pipelines.models.registry import ModelMissing
        self.dc = dc
        token = os.environ.get(dc["hf_token_env"] or "HF_TOKEN")
        try:
            import torch
            from pyannote.audio import Pipeline
            self.pipeline = Pipeline.from_pretrained(dc["pipeline"], token=token)
            if self.pipeline is None:
                raise RuntimeError("from_pretrained returned None (gated model, token refused?)")
            self.pipeline.to(torch.device(device))
        except Exception as e:
            raise ModelMissing(
                f"pyannote pipeline {dc['pipeline']!r} could not be loaded ({type(e).__name__}: {e}); "
                f"accept its terms on the hub and set ${dc['hf_token_env']}, give a local path in "
                "diarize.pipeline, or use diarize.backend: embedded") from e

    def __call__(self, path: str, speech: list[list[float]] | None = None, seed: int = 0) -> list[dict]:
        kw = {}
        if self.dc.get("num_speakers"):
            kw["num_speakers"] = int(self.dc["num_speakers"])
        else:
            kw.update(min_speakers=int(self.dc["min_speakers"]), max_speakers=int(self.dc["max_speakers"]))
        out = self.pipeline(path, **kw)
        ann = getattr(out, "speaker_diarization", out)
        return [{"start_s": float(s.start), "end_s": float(s.end), "speaker": str(spk)}
                for s, _, spk in ann.itertracks(yield_label=True)]


def load_diarizer(cfg: dict, device: str = "cpu"):
    dc = _diar_cfg(cfg)
    if dc["backend"] == "embedded":
        return EmbeddedDiarizer(dc, device)
    if dc["backend"] == "pyannote":
        return PyannoteDiarizer(dc, device)
    raise ValueError(f"diarize.backend {dc['backend']!r}: expected 'embedded' or 'pyannote'")
