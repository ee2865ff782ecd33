"""The catalog explains itself (comments on every table and column, metric keys documented,
`tandem catalog describe`), gives one language label per example, and `tandem report` works on
an output whose path holds a quote and spaces."""

import json
from datetime import timedelta

import pytest
from catalogs import catalog
from ray_jobs.cli import main

from tandem.testing.outputs import dialogue_output


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("describe") / "it's a 'quoted' out"
    return d, dialogue_output(d)["ids"]


def test_every_table_view_and_column_has_a_comment(out):
    out, _ = out
    con = catalog.connect(out)
    try:
        objs = con.execute("SELECT table_name, comment FROM duckdb_tables() WHERE NOT internal "
                           "UNION ALL SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall()
        names = {n for n, _ in objs}
        assert {"examples", "accepted", "rejections", "sources", "shards", "runs", "commits", "mixtures", "hours",
                "rejection_reasons", "metric_docs", "metric_keys"} <= names
        assert [n for n, c in objs if not c] == []
        cols = con.execute("SELECT table_name, column_name, comment FROM duckdb_columns() "
                           "WHERE NOT internal AND schema_name = 'main'").fetchall()
        assert len(cols) > 80 and [(t, c) for t, c, doc in cols if not doc] == []
    finally:
        con.close()


def test_every_metric_key_of_a_real_output_is_documented(out):
    out, _ = out
    cols, rows = catalog.query(out, "SELECT source, key, rows, unit, description FROM metric_keys")
    keys = {r[1] for r in rows}
    assert {"q.dnsmos_sig.ch0", "q.snr_db", "t.roundtrip_cer", "lid.text_chars", "dedup.exact"} <= keys
    assert [r[:2] for r in rows if not r[4]] == []
    # the README's recipe: the documented key has a value on every accepted example
    _, vals = catalog.query(out, "SELECT (metrics->>'q.dnsmos_sig.ch0')::DOUBLE FROM accepted")
    assert vals and all(v[0] is not None and 1.0 <= v[0] <= 5.0 for v in vals)


def test_accepted_view_hours_interval_and_one_language_label(out):
    out, ids = out
    _, rows = catalog.query(out, "SELECT (SELECT count(*) FROM accepted), "
                                 "(SELECT count(*) FROM examples WHERE status = 'accepted')")
    assert rows[0][0] == rows[0][1] == 4
    _, rows = catalog.query(out, "SELECT hours, duration FROM hours")
    assert all(isinstance(d, timedelta) and abs(d.total_seconds() / 3600 - h) < 1e-3 for h, d in rows)
    # a rejected example has one language: the rejection repeats it, detected_language is the filter's
    _, rows = catalog.query(out, "SELECT count(*) FROM rejections r JOIN examples e USING (example_id) "
                                 "WHERE r.language IS DISTINCT FROM e.language")
    assert rows == [(0,)]
    _, rows = catalog.query(out, "SELECT e.language, r.language, r.detected_language, r.reason FROM rejections r "
                                 "JOIN examples e USING (example_id) WHERE example_id = ?", [ids["nl-as-en"]])
    assert rows == [("en", "en", "nl", "language_mismatch")]


def test_catalog_describe_command(out, capsys):
    out, _ = out
    assert main(["catalog", "describe", str(out), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ex = {r["column"]: r["description"] for r in rows if r["table"] == "examples"}
    assert "metric_keys" in ex["metrics"] and ex["status"].startswith("accepted")
    assert main(["catalog", "describe", str(out), "accepted", "--format", "json"]) == 0
    assert {r["table"] for r in json.loads(capsys.readouterr().out)} == {"accepted"}
    assert main(["catalog", "describe", str(out), "--metrics", "--format", "json"]) == 0
    keys = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert keys["q.dnsmos_sig.ch0"]["unit"] == "1-5" and "DNSMOS" in keys["q.dnsmos_sig.ch0"]["description"]
    assert main(["catalog", "describe", str(out), "no_such_table"]) == 2
    assert "no_such_table" in capsys.readouterr().err


def test_report_on_a_path_with_quotes_and_spaces(out):
    out, _ = out
    assert main(["report", str(out)]) == 0
    html = (out / "report" / "index.html").read_text()
    assert "hours" in html.lower()
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary


def test_speaker_ids_are_scoped_to_their_source(out):
    out, _ = out
    _, rows = catalog.query(out, "SELECT count(DISTINCT s) FROM accepted, unnest(speakers) AS t(s)")
    assert rows == [(2,)]  # every example labels its speakers S0/S1
    _, rows = catalog.query(out, "SELECT source_ids[1], speakers, speaker_ids FROM examples")
    assert rows and all(ids == [f"{src}:{s}" for s in spk] for src, spk, ids in rows)
    _, rows = catalog.query(out, "SELECT count(DISTINCT s), 2 * count(DISTINCT example_id) "
                                 "FROM accepted, unnest(speaker_ids) AS t(s)")
    assert rows[0][0] == rows[0][1] == 8


def test_real_data_metric_keys_are_documented():
    # keys only real examples carry (the fixture is synthetic): turn-taking, audio language id
    import duckdb
    from catalogs import describe
    from filters.stage import turn_metrics
    keys = {**turn_metrics([[(0.0, 1.0)], [(1.3, 2.0)]]), "lid.audio.ch0.en": 0.9, "lid.seg.fr": 0.8,
            "lid.segvote.fr": 1.0, "lid.heard.fr": 1.0, "lid.heard_accepted": 1.0, "roundtrip_cer_ch0": 0.1}
    con = duckdb.connect()
    con.execute("CREATE TABLE examples (metrics VARCHAR)")
    con.execute("CREATE TABLE rejections (metrics VARCHAR)")
    con.execute("INSERT INTO examples VALUES (?)", [json.dumps(keys)])
    describe.create(con)
    rows = con.execute("SELECT key, description FROM metric_keys").fetchall()
    assert {k for k, _ in rows} == set(keys) and [k for k, d in rows if not d] == []
    assert dict(rows)["tt.gap_s"].startswith("real:")
