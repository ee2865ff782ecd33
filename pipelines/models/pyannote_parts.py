"""Pieces that let pyannote.audio's own diarization pipeline run on the bundled models.

- `ResemblyzerEmbedding`: resemblyzer's speaker encoder (the 256-d LSTM d-vector bundled in the
  `resemblyzer` wheel) as a `pyannote.audio.Model` with the `forward(waveforms, weights)` contract
  of pyannote's embedding models, so `SpeakerDiarization` extracts its per-(chunk, speaker)
  embeddings through it like through WeSpeaker. Its mel front end is resemblyzer's (librosa's
  slaney mel, 40 bands, 25/10 ms) in torch, batched and on the model's device.
- `neutral_plda()`: `SpeakerDiarization` loads a PLDA whatever the clustering. No PLDA exists for
  this encoder; agglomerative clustering never calls it. The neutral one (no centering, identity
  LDA, unit between-class variances) is a genuine `pyannote.audio.core.plda.PLDA` that maps
  embeddings to the unit sphere, so nothing in the pipeline has to be patched.
- `write_local_pipeline()`: a pyannote pipeline directory (config.yaml, embedding/, plda/) that
  `Pipeline.from_pretrained(dir)` loads offline.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from pyannote.audio import Model
from pyannote.audio.core.task import Problem, Resolution, Specifications
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.audio.pipelines.clustering import AgglomerativeClustering
from pyannote.pipeline.parameter import Uniform


def no_telemetry() -> None:
    """pyannote.audio 4 sends usage metrics to otel.pyannote.ai by default (its telemetry/config.yaml);
    a curation worker must not phone home unless TANDEM_PYANNOTE_METRICS=1 says so."""
    from pyannote.audio.telemetry.metrics import set_telemetry_metrics
    set_telemetry_metrics(os.environ.get("TANDEM_PYANNOTE_METRICS") == "1")


class ResemblyzerEmbedding(Model):
    """resemblyzer's VoiceEncoder (3-layer LSTM, 256-d, cosine) as a pyannote embedding model."""

    def __init__(self, sample_rate: int = 16000, num_channels: int = 1, n_fft: int = 400,
                 hop_length: int = 160, n_mels: int = 40, hidden_size: int = 256, num_layers: int = 3,
                 embedding_size: int = 256, task=None):
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.save_hyperparameters("n_fft", "hop_length", "n_mels", "hidden_size", "num_layers",
                                  "embedding_size")
        import torchaudio
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0,
            center=True, pad_mode="constant", norm="slaney", mel_scale="slaney")
        # same module names as resemblyzer.VoiceEncoder so its state dict loads as is
        self.lstm = torch.nn.LSTM(n_mels, hidden_size, num_layers, batch_first=True)
        self.linear = torch.nn.Linear(hidden_size, embedding_size)
        self.relu = torch.nn.ReLU()
        self.max_frames = 0  # cap on the frames one embedding reads (0: all); set by the diarizer
        self.level_dbfs: float | None = None  # level each item's kept frames are brought to (None: as is)
        # a chunk-level representation model, as pyannote's own embedding checkpoints declare
        self.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK,
                                             duration=5.0)

    @classmethod
    def pretrained(cls, weights: str | Path) -> ResemblyzerEmbedding:
        """The encoder with resemblyzer's bundled weights (`registry.resemblyzer_path()`)."""
        m = cls()
        state = torch.load(str(weights), map_location="cpu")["model_state"]
        missing, _ = m.load_state_dict(state, strict=False)
        if any(k.startswith(("lstm.", "linear.")) for k in missing):
            raise ValueError(f"{weights}: not a resemblyzer VoiceEncoder state dict (missing {missing})")
        return m.eval()

    @property
    def dimension(self) -> int:
        return int(self.hparams.embedding_size)

    def _level_gain(self, x: torch.Tensor, keep: torch.Tensor, T: int) -> torch.Tensor:
        """Power gain per item bringing the mean power of its kept frames to `level_dbfs`: the
        encoder reads linear mel power, and resemblyzer trained it on utterances brought to
        -30 dBFS, so without this an item's embedding moves with its level."""
        n_fft, hop = int(self.hparams.n_fft), int(self.hparams.hop_length)
        frames = torch.nn.functional.pad(x, (n_fft // 2, n_fft // 2)).unfold(-1, n_fft, hop)[:, :T]
        power = frames.pow(2).mean(-1)  # (B, T): the samples each mel frame reads
        k = keep[:, :power.shape[1]].float()
        mean = (power * k).sum(1) / k.sum(1).clamp(min=1)
        return 10.0 ** (self.level_dbfs / 10.0) / mean.clamp(min=1e-10)

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, 1, samples) [+ (batch, frames) activity weights] -> (batch, 256) unit vectors.

        Only mel frames where the weight exceeds 0.5 feed the LSTM (one packed, batched pass), at
        most `max_frames` of them (the middle ones); an item with no such frame gets NaN, which
        pyannote's clustering filters out as invalid.
        """
        mel = self.mel(waveforms[:, 0].float()).transpose(1, 2)  # (B, T, n_mels)
        B, T, _ = mel.shape
        if weights is None:
            keep = torch.ones(B, T, dtype=torch.bool, device=mel.device)
        else:
            w = torch.nn.functional.interpolate(weights.float()[:, None], size=T, mode="nearest")[:, 0]
            keep = w > 0.5
        if self.max_frames:  # the middle max_frames of each item's kept frames (cost is linear in frames)
            rank = torch.cumsum(keep, 1) - 1
            excess = (keep.sum(1, keepdim=True) - self.max_frames).clamp(min=0)
            keep &= (rank >= excess // 2) & (rank < excess // 2 + self.max_frames)
        lengths = keep.sum(1)
        if self.level_dbfs is not None:
            mel = mel * self._level_gain(waveforms[:, 0].float(), keep, T)[:, None, None]
        out = torch.full((B, self.dimension), float("nan"), device=mel.device)
        ok = torch.nonzero(lengths > 0)[:, 0]
        if len(ok) == 0:
            return out
        seqs = [mel[i][keep[i]] for i in ok.tolist()]
        packed = torch.nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        e = self.relu(self.linear(hidden[-1]))
        out[ok] = e / (torch.norm(e, dim=1, keepdim=True) + 1e-12)
        return out


def save_checkpoint(model: Model, path: str | Path) -> Path:
    """A checkpoint `pyannote.audio.Model.from_pretrained(path)` rebuilds (class, hparams, weights)."""
    import lightning
    from pyannote.audio import __version__
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
        "pyannote.audio": {
            "versions": {"pyannote.audio": __version__},
            "architecture": {"module": type(model).__module__, "class": type(model).__name__},
            "specifications": model.specifications,
        },
    }
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def _neutral_plda_arrays(dim: int) -> tuple[dict, dict]:
    eye, zero = np.eye(dim), np.zeros(dim)
    return ({"mean1": zero, "mean2": zero, "lda": eye}, {"mu": zero, "tr": eye, "psi": np.ones(dim)})


def neutral_plda(dim: int = 256):
    """A `PLDA` that only length-normalises (see module doc); built in memory, no files."""
    from pyannote.audio.core.plda import PLDA
    bufs = []
    for arrays in _neutral_plda_arrays(dim):
        b = io.BytesIO()
        np.savez(b, **arrays)
        b.seek(0)
        bufs.append(b)
    return PLDA(bufs[0], bufs[1], lda_dimension=dim)


def write_local_pipeline(out_dir: str | Path, *, segmentation: str | Path, embedding: Model,
                         clustering_params: dict, segmentation_params: dict,
                         embedding_exclude_overlap: bool = True) -> Path:
    """A pyannote SpeakerDiarization directory for `Pipeline.from_pretrained(out_dir)`, offline:
    config.yaml, embedding/pytorch_model.bin (from `embedding`), plda/ (neutral), segmentation by path."""
    import yaml
    out = Path(out_dir)
    save_checkpoint(embedding, out / "embedding" / "pytorch_model.bin")
    (out / "plda").mkdir(parents=True, exist_ok=True)
    for name, arrays in zip(("xvec_transform.npz", "plda.npz"), _neutral_plda_arrays(embedding.dimension)):
        np.savez(out / "plda" / name, **arrays)
    config = {
        "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization",
                     "params": {"segmentation": str(segmentation), "embedding": "$model/embedding",
                                "plda": "$model/plda", "clustering": "AgglomerativeClustering",
                                "embedding_exclude_overlap": embedding_exclude_overlap}},
        "params": {"segmentation": dict(segmentation_params), "clustering": dict(clustering_params)},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out



class CenteredAgglomerativeClustering(AgglomerativeClustering):
    """pyannote's agglomerative clustering, with the speaker-count criterion measured on real speech.

    1. One speaker when both (a) the final average-linkage merge of the raw embeddings is closer
       than `single_speaker_distance` (cosine) and (b) no chunk holds two local speakers that the
       segmentation model found (each alone for pyannote's minimum, 20% of the chunk) whose
       embeddings are `local_pair_distance` or more apart. (b) is evidence the embedding
       distance alone lacks: the segmentation model separates voices within a chunk, and two
       such voices far apart are two people (`one_speaker`).
    2. Otherwise the embeddings are centred on the recording's mean before pyannote's own
       clustering: every d-vector of one recording shares the channel (telephone band,
       microphone, level), which on real 8 kHz speech dominates the cosine so two voices look
       alike; removing the mean, as x-vector diarization recipes do before PLDA, leaves the
       between-speaker part. Centring cannot tell one voice from noise, hence step 1.
    3. The recording's mean leans to whoever talks most: a voice with 80% of the speech sits near
       it, its centred embeddings point every way and it splits in two. With
       `recentre_iterations`, the embeddings are centred again on the mean of the clusters'
       means (each speaker weighs alike) and clustered again, until the clusters stop changing.
    """

    def __init__(self, metric: str = "cosine", constrained_assignment: bool = False):
        super().__init__(metric=metric, constrained_assignment=constrained_assignment)
        self.single_speaker_distance = Uniform(0.0, 2.0)
        self.local_pair_distance = Uniform(0.0, 2.0)
        self._pair = 0.0
        self.recentre_iterations = 0  # set by the diarizer (diarize.recentre_iterations)

    def __call__(self, embeddings, segmentations=None, **kwargs):
        emb, chunk_idx, _ = self.filter_embeddings(embeddings, segmentations=segmentations)
        self._pair = local_pair_max(emb, chunk_idx)
        return super().__call__(embeddings, segmentations=segmentations, **kwargs)

    def cluster(self, embeddings, min_clusters=None, max_clusters=None, num_clusters=None):
        if len(embeddings) < 2:
            return super().cluster(embeddings, min_clusters=min_clusters, max_clusters=max_clusters,
                                   num_clusters=num_clusters)
        e = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12)
        one = one_speaker(last_merge(e), self._pair, self.single_speaker_distance, self.local_pair_distance)
        if num_clusters is None and (min_clusters or 1) <= 1 and one:
            return np.zeros(len(e), dtype=int)
        kw = {"min_clusters": min_clusters, "max_clusters": max_clusters, "num_clusters": num_clusters}
        labels = super().cluster(_unit(e - e.mean(axis=0)), **kw)
        for _ in range(self.recentre_iterations):
            if labels.max() < 1:
                break
            centre = np.mean([e[labels == k].mean(axis=0) for k in np.unique(labels)], axis=0)
            new = super().cluster(_unit(e - centre), **kw)
            if np.array_equal(new, labels):
                break
            labels = new
        return labels


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def last_merge(embeddings: np.ndarray) -> float:
    """Cosine distance of the final average-linkage merge (0 for fewer than two embeddings)."""
    from scipy.cluster.hierarchy import linkage
    if len(embeddings) < 2:
        return 0.0
    e = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12)
    return float(linkage(e, method="average", metric="cosine")[-1, 2])


def local_pair_max(embeddings: np.ndarray, chunk_idx: np.ndarray) -> float:
    """Largest cosine distance between two local speakers of the same chunk (0: no such pair)."""
    e = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12)
    best = 0.0
    for c in np.unique(chunk_idx):
        idx = np.flatnonzero(chunk_idx == c)
        if len(idx) > 1:
            best = max(best, float((1.0 - e[idx] @ e[idx].T).max()))
    return best


def one_speaker(merge: float, pair: float, single_speaker_distance: float, local_pair_distance: float) -> bool:
    """The one-speaker decision of `CenteredAgglomerativeClustering` (figures in the defaults)."""
    return merge < single_speaker_distance and pair < local_pair_distance


class EmbeddedSpeakerDiarization(SpeakerDiarization):
    """pyannote's SpeakerDiarization with `CenteredAgglomerativeClustering` as its clustering step
    (SpeakerDiarization picks clustering from a fixed list; this subclass only sets its own part)."""

    def __init__(self, **kwargs):
        kwargs["clustering"] = "AgglomerativeClustering"
        super().__init__(**kwargs)
        self.clustering = CenteredAgglomerativeClustering(metric=self._embedding.metric)


def overlap_speaker_count(binarized_segmentations, frames, warm_up=(0.1, 0.1), overlap_onset: float = 0.5):
    """pyannote's `SpeakerDiarizationMixin.speaker_count` (active local speakers summed per chunk,
    averaged over the chunks that see a frame) with its own rounding above one speaker: a frame
    holds k + 1 speakers once the average passes k + overlap_onset (pyannote rounds, i.e. 0.5).
    Speech against silence (below one) is rounded as pyannote does. With 1 s steps five chunks see
    a frame, so 0.5 asks three of them to hear two voices, 0.3 two, 0.15 one."""
    from pyannote.audio.core.inference import Inference
    trimmed = Inference.trim(binarized_segmentations, warm_up=warm_up)
    count = Inference.aggregate(np.sum(trimmed, axis=-1, keepdims=True), frames, hamming=False,
                                missing=0.0, skip_average=False)
    c = count.data
    k = np.floor(c + 1e-6)
    above = np.where(c < 1.0, np.rint(c), k + (c - k >= overlap_onset - 1e-6))
    count.data = above.astype(np.uint8)
    return count
