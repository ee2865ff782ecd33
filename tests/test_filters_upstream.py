"""The speech regions the filter stage hands the quality filter from the curation VAD."""

import json

from filters.stage import upstream_regions


def _example(span, main, words, two=False, kind="real"):
    return {"kind": kind, "words": words,
            "params": json.dumps({"span": span, "main_speaker": main, "two_channel": two})}


def test_mono_regions_follow_vad_within_each_channels_speakers():
    item = {"speech": [[10.0, 14.0], [15.0, 19.0], [30.0, 31.0]],
            "turns": [{"speaker": "A", "start_s": 9.0, "end_s": 12.5},
                      {"speaker": "B", "start_s": 12.5, "end_s": 16.0},
                      {"speaker": "A", "start_s": 16.0, "end_s": 25.0}]}
    # a word of B (example time) outside B's turns: its audio is on channel 1 too
    words = [{"channel": 1, "start_s": 7.5, "end_s": 8.0}]
    got = upstream_regions(_example([10.0, 20.0], "A", words), item)
    assert got == [[(0.0, 2.5), (6.0, 9.0)], [(2.5, 4.0), (5.0, 6.0), (7.5, 8.0)]]


def test_two_channel_regions_are_each_channels_vad():
    item = {"speech": [[0.0, 5.0]], "speech_ch": [[[1.0, 2.0], [8.0, 9.0]], [[0.0, 5.0]]]}
    got = upstream_regions(_example([1.5, 8.5], "CH0", [], two=True), item)
    assert got == [[(0.0, 0.5), (6.5, 7.0)], [(0.0, 3.5)]]


def test_none_without_upstream_vad():
    assert upstream_regions(_example([0.0, 5.0], "A", []), {}) is None
    assert upstream_regions(_example([0.0, 5.0], "A", [], kind="synthetic"), {"speech": [[0.0, 1.0]]}) is None
