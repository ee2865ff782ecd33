"""What the catalog's tables, columns and metric keys mean: COMMENT ON every table and column
(DuckDB keeps them in the file: `duckdb_columns().comment`), the `metric_docs` table (metric key
patterns with their meaning) and `tandem catalog describe`.

A column or metric key missing here is shown without a description; tests/test_catalog_describe.py
fails on one, so new fields get documented where researchers look.
"""

from __future__ import annotations

_EX = {
    "example_id": "the example's id: a hash of its source's decoded audio (or script), span and config hash",
    "kind": "real (curated recordings) | synthetic (tandem synth dialogues)",
    "language": "the example's language (ISO 639-1): declared for synthetic data, transcribed for real data; "
                "the one language label of the example (rejections.language repeats it)",
    "duration_s": "length in seconds",
    "sample_rate": "audio sample rate in Hz (24000)",
    "num_samples": "audio length in samples per channel",
    "words": "list of words: channel (0 main speaker, 1 other side), speaker, word, start_s, end_s, score "
             "(aligner confidence 0-1), overlap (inside speech of both channels)",
    "segments": "ASR segments with Whisper's trust signals (language, avg_logprob, no_speech_prob, "
                "compression_ratio ...)",
    "text_ch0": "transcript of channel 0 (the main speaker)",
    "text_ch1": "transcript of channel 1 (the other side)",
    "speakers": ("speaker ids, speakers[0] the main speaker (channel 0): real '<source_id>:<label>' (the "
                 "diarizer's SPEAKER_00 or a channel's CH0, per source), synthetic '<tts>:<voice>' (one voice "
                 "in many dialogues is one speaker); older outputs hold the bare labels"),
    "num_speakers": "number of distinct speakers in the example",
    "overlap_ratio": "share of the speech where both channels speak",
    "speech_ratio": "share of the duration that is speech (either channel)",
    "snr_db": "WADA-SNR in dB, lowest over the speaking channels (metric q.snr_db); NaN if not computed",
    "dnsmos_ovrl": "DNSMOS P.835 overall score 1-5, lowest over the speaking channels (metric q.dnsmos_ovrl)",
    "clipping_ratio": "share of clipped samples, worst channel (metric q.clipping)",
    "bandwidth_hz": "effective audio bandwidth in Hz, lowest over the speaking channels (metric q.bandwidth_hz)",
    "lid_language": "language the language filter detected (may differ from `language` on a rejected example)",
    "lid_prob": "confidence of lid_language",
    "roundtrip_cer": "synthetic: character error rate of Whisper on the dialogue against its script "
                     "(worse channel); NaN for real data",
    "metrics": "JSON object {metric key: number} of everything the filters measured; keys in metric_keys, "
               "e.g. (metrics->>'q.dnsmos_sig.ch0')::DOUBLE",
    "seed": "the random seed the example was made with",
    "params": "JSON of every random draw (turn-taking, augmentation, voice casting)",
    "source_ids": "the sources (sources.source_id) the example was cut from",
    "source_spans": "list of (source_id, start_s, end_s): where in its sources the example lies",
    "config_hash": "hash of the resolved job config (runs.config_hash)",
    "pipeline_version": "tandem version that made the example",
    "status": "accepted (in OUT/shards/) | rejected (in OUT/rejected/, reasons in rejections)",
    "shard": "the Parquet file holding the row, relative to OUT",
    "speaker_ids": ("`speakers`, with a bare label of an older output scoped to its source "
                    "('<source_ids[1]>:<label>'): split by these for speaker-disjoint sets"),
}
_REJ = {
    "rejection_id": "id of the rejection row",
    "uri": "the input file (absolute, resolved path; or script id) the rejected item came from",
    "source_id": "sources.source_id of the input (null when it could not be decoded)",
    "example_id": "examples.example_id of the rejected example; null when a whole source was rejected",
    "kind": "real | synthetic",
    "stage": "stage that rejected: ingest, vad, diarize, transcribe, assemble, filter, dedup, synth ...",
    "filter": "filter name (quality, language, trust, dedup), or the stage name for stage failures",
    "reason": "short machine-readable reason, e.g. decode_error, snr_low, language_other",
    "detail": "human-readable message with the numbers behind the decision",
    "language": "the example's language label (examples.language) when the row names an example; "
                "else the language detected, when known",
    "detected_language": "the language the rejecting filter detected (e.g. why a language filter rejected)",
    "duration_s": "seconds of audio rejected (NaN when unknown)",
    "metrics": "JSON object of the numbers behind the decision (keys in metric_keys)",
    "config_hash": "hash of the config that decided",
    "run_id": "the run that decided (runs.run_id)",
}
_SRC = {
    "source_id": "hash of the decoded audio (or of the script, for synthetic); the same recording under "
                 "two names has one source_id",
    "uri": "the input's absolute, resolved path (or script id), whatever directory the job ran in",
    "kind": "real | synthetic",
    "format": "container/codec of the input (wav, mp3, flac ...; script for synthetic)",
    "orig_sample_rate": "sample rate of the input file in Hz",
    "orig_channels": "channels of the input file",
    "duration_s": "length of the input in seconds",
    "bytes": "size of the input file in bytes",
    "status": "accepted (has accepted examples) | rejected | duplicate (same audio under another uri)",
    "num_examples": "accepted examples cut from this source",
    "work_key": "hash(source identity, config hash): what a rerun skips on",
    "config_hash": "hash of the job config",
    "run_id": "the run that ingested it",
    "uri_given": ("the input as the user named it: the manifest's entry as written, or the path under the "
                  "directory or glob as typed (null in outputs written before this column)"),
}
TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "examples": ("every example, accepted and rejected (no audio; the audio is in the `shard` file); "
                 "the `accepted` view holds the accepted ones", _EX),
    "accepted": ("view: the accepted examples (status = 'accepted'), exactly the rows of OUT/shards/*.parquet",
                 _EX),
    "rejections": ("why anything was rejected: one row per rejected example or source", _REJ),
    "sources": ("every input seen, with its content hash and status", _SRC),
    "shards": ("the live Parquet files of examples (OUT/shards and OUT/rejected)", {
        "shard_id": "file name without extension", "kind": "shards (accepted) | rejected (filtered out, audio kept)",
        "path": "path relative to OUT", "rows": "examples in the file", "bytes": "file size in bytes",
        "sha256": "checksum recorded in the commit manifest", "commit_id": "the commit that wrote it",
        "run_id": "the run that wrote it"}),
    "runs": ("one row per job run (OUT/runs/*.json)", {
        "run_id": "id of the run", "job": "curate | synth | filter ...", "started_at": "UTC start time (ISO 8601)",
        "finished_at": "UTC end time (ISO 8601)", "status": "finished | failed ...",
        "config_hash": "hash of the resolved config", "config": "the resolved config, JSON",
        "pipeline_version": "tandem version", "versions": "JSON of library versions",
        "stages": "JSON list of per-stage figures (items in/out, rejected, seconds, real-time factor)",
        "argv": "the command line"}),
    "commits": ("one row per atomic commit (OUT/_commits/*.json manifests), in order", {
        "commit_id": "id of the commit (sequence number and hash)", "run_id": "the run that committed",
        "job": "the job of that run", "seq": "commit sequence number (the order of commits)",
        "created_at": "UTC time of the commit", "work_items": "work items the commit completed",
        "files": "files the commit added"}),
    "mixtures": ("named selections for training mixtures (`tandem catalog mix`)", {
        "name": "mixture name", "component": "component name", "sql": "SQL selecting example_id from examples",
        "weight": "sampling weight of the component"}),
    "hours": ("view: examples and hours by language, kind and status", {
        "language": "examples.language", "kind": "real | synthetic", "status": "accepted | rejected",
        "examples": "number of examples", "hours": "total duration in hours",
        "duration": "total duration as an INTERVAL (h:mm:ss)"}),
    "rejection_reasons": ("view: rejections by stage, filter and reason", {
        "stage": "rejections.stage", "filter": "rejections.filter", "reason": "rejections.reason",
        "n": "number of rejections", "hours": "rejected audio in hours",
        "duration": "rejected audio as an INTERVAL (h:mm:ss)"}),
    "metric_docs": ("what each metric key means: GLOB patterns over the keys of the `metrics` JSON objects", {
        "pattern": "GLOB pattern of metric keys (ch* = channel number, <lang> parts as *)",
        "unit": "unit or range of the value", "description": "what the metric measures"}),
    "metric_keys": ("view: every metric key found in examples.metrics and rejections.metrics, with its meaning", {
        "source": "examples | rejections: which table's metrics column holds the key",
        "key": "the key: read it with (metrics->>'<key>')::DOUBLE", "rows": "rows that have the key",
        "min": "smallest numeric value", "max": "largest numeric value",
        "unit": "metric_docs.unit of the most specific matching pattern",
        "description": "metric_docs.description of the most specific matching pattern"}),
}

METRICS: list[tuple[str, str, str]] = [
    ("q.speech_s.ch*", "s", "seconds of speech the VAD found on channel N"),
    ("q.level_dbfs.ch*", "dBFS", "speech level of channel N"),
    ("q.level_dbfs", "dBFS", "level of the loudest channel (silence rule)"),
    ("q.clipping.ch*", "0-1", "share of clipped samples on channel N"),
    ("q.clipping", "0-1", "share of clipped samples, worst channel (column clipping_ratio)"),
    ("q.flatness.ch*", "0-1", "spectral flatness of channel N (1 = noise-like)"),
    ("q.flatness", "0-1", "spectral flatness, highest over the judged channels (noise/music rules)"),
    ("q.snr_db.ch*", "dB", "WADA-SNR of channel N's speech"),
    ("q.snr_db", "dB", "WADA-SNR, lowest over the judged channels (column snr_db)"),
    ("q.bandwidth_hz.ch*", "Hz", "effective bandwidth of channel N"),
    ("q.bandwidth_hz", "Hz", "effective bandwidth, lowest over the judged channels (column bandwidth_hz)"),
    ("q.dnsmos_sig.ch*", "1-5", "DNSMOS P.835 speech signal quality of channel N's speech"),
    ("q.dnsmos_bak.ch*", "1-5", "DNSMOS P.835 background-noise score of channel N (5 = no noise)"),
    ("q.dnsmos_ovrl.ch*", "1-5", "DNSMOS P.835 overall quality of channel N's speech"),
    ("q.dnsmos_ovrl", "1-5", "DNSMOS overall, lowest over the speaking channels (column dnsmos_ovrl)"),
    ("q.speech_ratio", "0-1", "share of the duration that is speech on either channel"),
    ("q.longest_silence_s", "s", "longest stretch without speech on either channel"),
    ("q.speaking_channels", "count", "channels with enough speech to be judged"),
    ("t.words", "count", "words in the transcript"),
    ("t.repeat_ngram_ratio", "0-1", "share of repeated word 3-grams (hallucination loops)"),
    ("t.max_word_len", "chars", "longest word"),
    ("t.top_word_share", "0-1", "share of the most frequent word"),
    ("t.hallucination_phrases", "count", "phrases Whisper invents on silence found in the transcript"),
    ("t.roundtrip_cer", "CER", "synthetic: round-trip character error rate against the script"),
    ("w.count", "count", "words with timestamps"),
    ("w.non_monotonic", "count", "words starting before the previous word on their channel"),
    ("w.outside", "count", "words outside the example's duration"),
    ("w.too_long", "count", "words longer than the limit"),
    ("w.zero_length", "count", "words with end <= start"),
    ("s.count", "count", "ASR segments"),
    ("s.no_speech_segments", "count", "segments Whisper scores as silence (no_speech_prob > 0.6, low log-prob)"),
    ("s.max_no_speech_prob", "0-1", "highest no_speech_prob over the segments"),
    ("s.min_avg_logprob", "log-prob", "lowest segment avg_logprob"),
    ("s.mean_avg_logprob", "log-prob", "mean segment avg_logprob"),
    ("s.max_compression_ratio", "ratio", "highest segment compression ratio (> 2.4: repetitive)"),
    ("lid.prob", "0-1", "confidence of the reconciled language (column lid_prob)"),
    ("lid.text_chars", "chars", "characters of transcript text language-identified"),
    ("lid.text.*", "0-1", "text language id: probability of language <lang> on the whole transcript"),
    ("lid.text.ch*.*", "0-1", "text language id on channel N's transcript: probability of <lang>"),
    ("lid.audio.ch*.*", "0-1", "Whisper's audio language detection on channel N: probability of its top <lang>"),
    ("lid.seg.*", "0-1", "highest per-segment probability the transcription gave language <lang>"),
    ("lid.segvote.*", "0-1", "share of the segment vote (speech-weighted) for language <lang>"),
    ("lid.heard.*", "0-1", "share of the speech heard as language <lang>"),
    ("lid.heard_accepted", "0-1", "share of the speech heard in an accepted language"),
    ("lid.*", "", "language identification detail (see filters/language.py)"),
    ("tt.span_s", "s", "real: seconds from the first to the last speech (Moshi's turn-taking measure)"),
    ("tt.ipu_s", "s", "real: inter-pausal-unit seconds summed over both channels' speech regions"),
    ("tt.pause_s", "s", "real: seconds of silence between IPUs of the same speaker"),
    ("tt.gap_s", "s", "real: total seconds of silence between speaker changes"),
    ("tt.overlap_s", "s", "real: total seconds both channels speak"),
    ("roundtrip_cer_ch*", "CER", "synthetic: round-trip CER of channel N against its script"),
    ("roundtrip_cer_mean", "CER", "synthetic: mean of the two channels' round-trip CER"),
    ("best_of", "count", "synthetic: renditions made (best-of-N), the lowest-CER one kept"),
    ("best_of_kept", "index", "synthetic: which rendition was kept"),
    ("best_of_cers", "list", "synthetic: round-trip CER of every rendition"),
    ("dedup.exact", "flag", "rejections: 1 when the decoded audio is identical to a kept example's"),
    ("dedup.audio_ber", "0-1", "rejections: fingerprint bit error rate against the matched example"),
    ("dedup.jaccard", "0-1", "rejections: estimated transcript Jaccard similarity to the matched example"),
]


def _lit(text: str) -> str:
    """A SQL string literal (COMMENT ON takes no parameters): quotes doubled."""
    return "'" + str(text).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def create(con) -> None:
    """The metric_docs table and the metric_keys view (after the examples/rejections tables)."""
    con.execute("CREATE OR REPLACE TABLE metric_docs (pattern VARCHAR, unit VARCHAR, description VARCHAR)")
    con.executemany("INSERT INTO metric_docs VALUES (?, ?, ?)", METRICS)
    parts = []
    for table in ("examples", "rejections"):
        parts.append(f"""SELECT '{table}' AS source, k AS key, count(*) AS rows,
            min(TRY_CAST(metrics->>k AS DOUBLE)) AS min, max(TRY_CAST(metrics->>k AS DOUBLE)) AS max
            FROM (SELECT metrics, unnest(json_keys(metrics)) AS k FROM {table}
                  WHERE metrics IS NOT NULL AND json_valid(metrics)) GROUP BY k""")
    # the most specific pattern wins: lid.text.ch0.en is `lid.text.ch*.*`, not `lid.text.*`
    con.execute(f"""CREATE OR REPLACE VIEW metric_keys AS
        SELECT o.source, o.key, o.rows, o.min, o.max,
               arg_max(d.unit, length(d.pattern)) AS unit, arg_max(d.description, length(d.pattern)) AS description
        FROM ({' UNION ALL '.join(parts)}) o LEFT JOIN metric_docs d ON o.key GLOB d.pattern
        GROUP BY ALL ORDER BY o.source, o.key""")


def annotate(con) -> None:
    """COMMENT ON every documented table, view and column that exists in `con`."""
    kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables "
                             "WHERE table_schema = 'main'").fetchall())
    for name, (text, cols) in TABLES.items():
        if name not in kinds:
            continue
        what = "VIEW" if kinds[name] == "VIEW" else "TABLE"
        con.execute(f"COMMENT ON {what} {_ident(name)} IS {_lit(text)}")
        have = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = 'main' AND table_name = ?", [name]).fetchall()}
        for col, doc in cols.items():
            if col in have:
                con.execute(f"COMMENT ON COLUMN {_ident(name)}.{_ident(col)} IS {_lit(doc)}")


def describe(con, table: str | None = None) -> list[tuple]:
    """(table, kind, column, type, description) for every table and view (or one), table rows first."""
    rows = []
    for name, kind, comment in con.execute(
            "SELECT table_name, 'table', comment FROM duckdb_tables() WHERE NOT internal AND schema_name = 'main' "
            "UNION ALL SELECT view_name, 'view', comment FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' "
            "ORDER BY 1").fetchall():
        if table is not None and name != table:
            continue
        rows.append((name, kind, "", "", comment or ""))
        for col, typ, c in con.execute("SELECT column_name, data_type, comment FROM duckdb_columns() "
                                       "WHERE table_name = ? AND schema_name = 'main' ORDER BY column_index",
                                       [name]).fetchall():
            rows.append((name, kind, col, typ, c or ""))
    if table is not None and not rows:
        raise ValueError(f"no table or view {table!r} in the catalog (see `tandem catalog describe OUT`)")
    return rows
