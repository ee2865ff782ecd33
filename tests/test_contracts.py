import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipelines.core import contracts as C
from pipelines.io.audio import decode_flac

from tandem.testing.fixtures import tone_example


def test_example_schema_round_trip(tmp_path):
    rows = [tone_example(i) for i in range(3)]
    table = C.to_table(rows, C.EXAMPLE_SCHEMA)
    C.validate(table, C.EXAMPLE_SCHEMA)
    pq.write_table(table, tmp_path / "x.parquet")
    back = pq.read_table(tmp_path / "x.parquet")
    assert back.schema.equals(C.EXAMPLE_SCHEMA, check_metadata=False)
    got = back.to_pylist()
    assert [r["example_id"] for r in got] == [r["example_id"] for r in rows]
    assert got[1]["words"][1]["channel"] == 1 and got[1]["words"][1]["word"] == "world1"
    assert C.metrics_of(got[2]) == {"index": 2.0}
    audio, sr = decode_flac(got[0]["audio"])
    assert sr == 24000 and audio.shape == (2, 48000)
    # channel 0 speaks first, channel 1 second: the contract's channel layout survives
    assert abs(audio[0, :24000]).mean() > 0.1 and abs(audio[0, 24000:]).mean() < 1e-3
    assert abs(audio[1, 24000:]).mean() > 0.1


def test_required_fields_present():
    names = set(C.EXAMPLE_SCHEMA.names)
    for f in ("example_id", "kind", "language", "duration_s", "sample_rate", "audio", "words", "text_ch0",
              "text_ch1", "speakers", "snr_db", "dnsmos_ovrl", "seed", "source_ids", "config_hash",
              "pipeline_version"):
        assert f in names
    assert set(C.WORD.names if hasattr(C.WORD, "names") else [f.name for f in C.WORD]) >= {
        "channel", "speaker", "word", "start_s", "end_s", "score"}


def test_validate_rejects_wrong_types_and_kinds():
    t = C.to_table([tone_example(0)], C.EXAMPLE_SCHEMA)
    bad = t.set_column(t.schema.get_field_index("duration_s"), "duration_s", pa.array(["2.0"]))
    with pytest.raises(ValueError, match="duration_s"):
        C.validate(bad, C.EXAMPLE_SCHEMA)
    bad_kind = t.set_column(t.schema.get_field_index("kind"), "kind", pa.array(["fake"]))
    with pytest.raises(ValueError, match="kind"):
        C.validate(bad_kind, C.EXAMPLE_SCHEMA)
    with pytest.raises(KeyError, match="nonsense"):
        C.example_row(nonsense=1)


def test_defaults_and_stable_ids():
    r = C.rejection_row(uri="a.wav", stage="ingest", reason="empty")
    assert math.isnan(r["duration_s"]) and C.metrics_of(r) == {} and r["filter"] == "ingest"
    assert r["rejection_id"] == C.rejection_row(uri="a.wav", stage="ingest", reason="empty")["rejection_id"]
    assert C.stable_hash("a", 1) != C.stable_hash("a", 2)
    assert C.work_key("x", "h1") != C.work_key("x", "h2")
    for schema in C.SCHEMAS.values():
        C.validate(C.to_table([], schema), schema)
