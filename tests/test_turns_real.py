"""Turn-taking of curated real conversation (issue 25 item 6): pipelines/core/turntaking.py's measurement on
accepted real examples' words, in the report and in `tandem curate`'s summary, next to Fisher."""

import json

import duckdb
import pyarrow as pa
import pytest
from catalogs import report
from catalogs.turns import format_real, real_turn_taking
from pipelines.core.turntaking import FISHER


def w(ch, s, e):
    return {"channel": ch, "speaker": f"S{ch}", "word": "x", "start_s": s, "end_s": e, "score": 1.0, "overlap": False}


# 60 s: ch0 speaks 0-20 and 30-50, ch1 19-29 (1 s overlapped) and 50.5-60 (0.5 s gap)
CALL = [w(0, 0.0, 20.0), w(1, 19.0, 29.0), w(0, 30.0, 50.0), w(1, 50.5, 60.0)]


def test_per_minute_figures_of_a_known_call():
    tt = real_turn_taking([{"words": CALL}, {"words": []}])
    pm = tt["per_minute"]
    assert tt["dialogues"] == 1 and tt["fisher"] == FISHER
    assert pm["overlap"] == pytest.approx(1.0, abs=0.02)
    assert pm["gap"] == pytest.approx(1.5, abs=0.02)  # 29-30 and 50-50.5
    assert pm["ipu"] == pytest.approx(59.5, abs=0.05)
    text = format_real(tt)
    assert "Fisher" in text and "curated" in text and "may be lost" not in text


def test_no_overlap_on_real_calls_is_flagged():
    no_overlap = [w(0, 0.0, 20.0), w(1, 20.3, 29.0), w(0, 29.5, 50.0)]
    assert "overlapped speech may be lost" in format_real(real_turn_taking([{"words": no_overlap}]))
    assert "no accepted real examples" in format_real(real_turn_taking([]))


def test_report_measures_accepted_real_examples_only():
    word_t = pa.list_(pa.struct([("channel", pa.int8()), ("speaker", pa.string()), ("word", pa.string()),
                                 ("start_s", pa.float64()), ("end_s", pa.float64()), ("score", pa.float32()),
                                 ("overlap", pa.bool_())]))
    shifted = [{**x, "channel": 1 - x["channel"]} for x in CALL]
    t = pa.table({"kind": ["real", "real", "synthetic"], "status": ["accepted", "rejected", "accepted"],
                  "metrics": ["{}", "{}", "{}"],
                  "words": pa.array([CALL, [w(0, 0.0, 5.0), w(1, 0.0, 5.0)], shifted], word_t)})
    con = duckdb.connect()
    con.register("examples", t)
    tt = report._real_turn_taking(con)
    assert tt["dialogues"] == 1 and tt["per_minute"]["overlap"] == pytest.approx(1.0, abs=0.02)
    assert report._tt_rows(tt)[3]["figure"] == "overlap"


def test_channel_activity_preferred_over_words():
    # Whisper wrote one voice where both talked: the words show no overlap, the channels do
    from filters.stage import turn_metrics
    regions = [[(0.0, 20.0), (30.0, 50.0)], [(18.0, 29.0), (49.0, 60.0)]]
    m = turn_metrics(regions)
    assert m["tt.overlap_s"] == pytest.approx(3.0, abs=0.02) and m["tt.span_s"] == pytest.approx(60.0, abs=0.02)
    words = [w(0, 0.0, 20.0), w(1, 20.5, 29.0), w(0, 30.0, 50.0), w(1, 50.5, 60.0)]
    tt = real_turn_taking([{"metrics": json.dumps(m), "words": words}])
    assert tt["measured_on"] == ["channels"] and tt["per_minute"]["overlap"] == pytest.approx(3.0, abs=0.05)
    assert real_turn_taking([{"metrics": "{}", "words": words}])["per_minute"]["overlap"] == 0.0
