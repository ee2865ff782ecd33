"""The embedded diarizer's one-speaker test on constructed evidence: the segmentation model's
in-chunk speaker pairs overrule a close last merge (pyannote_parts.CenteredAgglomerativeClustering)."""

import numpy as np
import pytest
from pyannote.core import SlidingWindow, SlidingWindowFeature
from pipelines.models.pyannote_parts import (
    CenteredAgglomerativeClustering,
    last_merge,
    local_pair_max,
    one_speaker,
)

FRAMES, DIM = 100, 16


def _clustering():
    """The clustering with the shipped defaults (pipelines/core/defaults/10_curate.yaml)."""
    from pipelines.core.config import load_config, section
    d = section(load_config(None), "diarize")
    c = CenteredAgglomerativeClustering(metric="cosine")
    c.instantiate({"method": d["clustering_method"], "threshold": d["clustering_threshold"],
                   "min_cluster_size": 1, "single_speaker_distance": d["single_speaker_distance"],
                   "local_pair_distance": d["local_pair_distance"]})
    return c


def _arc(n: int, degrees: float, rng) -> np.ndarray:
    """n unit vectors spread evenly over an arc (one voice drifting slowly), a little noise."""
    t = np.radians(np.linspace(0.0, degrees, n))
    e = np.zeros((n, DIM))
    e[:, 0], e[:, 1] = np.cos(t), np.sin(t)
    e += 0.01 * rng.standard_normal(e.shape)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _evidence(paired_chunk: bool, rng):
    """20 chunks with one local speaker each, embeddings on a 66 degree arc (its two ends 0.6
    apart, the average-linkage last merge under the default cut); with paired_chunk, chunk 0 holds
    both arc ends as two local speakers, each alone for half the chunk."""
    n = 20
    arc = _arc(n, 66.0, rng)
    emb = np.full((n, 3, DIM), np.nan)
    seg = np.zeros((n, FRAMES, 3))
    emb[:, 0] = arc
    seg[:, :, 0] = 1
    if paired_chunk:
        seg[0, :, 0] = 0
        seg[0, :FRAMES // 2, 0] = 1
        seg[0, FRAMES // 2:, 1] = 1
        emb[0, 1] = arc[-1]
    return emb, SlidingWindowFeature(seg, SlidingWindow(start=0.0, duration=5.0, step=1.0))


@pytest.mark.parametrize("paired_chunk,speakers", [(False, 1), (True, 2)])
def test_in_chunk_pair_decides_against_a_close_last_merge(paired_chunk, speakers):
    rng = np.random.default_rng(0)
    emb, seg = _evidence(paired_chunk, rng)
    ok = ~np.isnan(emb[:, :, 0])
    c = _clustering()
    assert last_merge(emb[ok]) < c.single_speaker_distance  # the embedding distance alone says one
    hard, _, _ = c(emb, segmentations=seg, min_clusters=1, max_clusters=6)
    assert int(hard[ok].max()) + 1 >= speakers
    if speakers == 1:
        assert int(hard[ok].max()) == 0


def test_pair_needs_both_local_speakers_alone_long_enough():
    """A second local speaker alone for under pyannote's 20% of the chunk is no evidence."""
    rng = np.random.default_rng(1)
    emb, seg = _evidence(True, rng)
    seg.data[0, :, 0] = 1
    seg.data[0, :, 1] = 0
    seg.data[0, :10, 1] = 1  # 10% of the frames, overlapping speaker 0
    hard, _, _ = _clustering()(emb, segmentations=seg, min_clusters=1, max_clusters=6)
    assert int(np.nanmax(hard[~np.isnan(emb[:, :, 0])])) == 0


def test_local_pair_max_and_decision():
    e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.9, 0.2]])
    assert local_pair_max(e, np.array([0, 0, 1, 2])) == pytest.approx(1.0)
    assert local_pair_max(e, np.array([0, 1, 2, 3])) == 0.0
    assert one_speaker(0.2, 0.0, 0.36, 0.45)
    assert not one_speaker(0.4, 0.0, 0.36, 0.45)
    assert not one_speaker(0.2, 0.5, 0.36, 0.45)


def test_recentring_keeps_the_voice_that_talks_most_whole():
    """Voice A has 20 embeddings, voice B 4, all sharing one channel direction: the recording's
    mean sits near A, A's centred embeddings point every way and part of A joins B; centred on
    the mean of the clusters' means (recentre_iterations) A and B come out whole."""
    rng = np.random.default_rng(0)
    chan, a_dir, b_dir = np.zeros(DIM), np.zeros(DIM), np.zeros(DIM)
    chan[0], a_dir[1], b_dir[2] = 1.0, 0.25, 0.6
    e = np.vstack([chan + a_dir + 0.12 * rng.standard_normal((20, DIM)),
                   chan + b_dir + 0.12 * rng.standard_normal((4, DIM))])
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    truth = np.array([0] * 20 + [1] * 4)
    got = {}
    for iterations in (0, 3):
        c = _clustering()
        c.min_cluster_size, c.recentre_iterations = 3, iterations
        got[iterations] = c.cluster(e.copy(), min_clusters=1, max_clusters=6)
    assert len(set(got[0][truth == 0])) > 1  # the recording's mean alone splits A
    lab = got[3]
    assert lab.max() == 1 and len(set(lab[truth == 0])) == 1 and len(set(lab[truth == 1])) == 1
    assert lab[0] != lab[-1]
