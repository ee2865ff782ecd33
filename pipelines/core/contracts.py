"""Data contracts: the Arrow schemas every stage, shard, catalog table and loader agrees on.

Times are seconds (float64) from the start of the example (words, segments) or of the
source (spans). Ids are content hashes so reruns are idempotent.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1
LANGUAGES = ("en", "fr", "de", "es", "it", "pt")
KINDS = ("real", "synthetic")

WORD = pa.struct(
    [
        ("channel", pa.int8()),  # 0 = main speaker, 1 = the other side
        ("speaker", pa.string()),
        ("word", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("score", pa.float32()),  # aligner/ASR confidence in [0, 1]; 1.0 for known synthetic timings
        ("overlap", pa.bool_()),  # inside speech of both channels
    ]
)

SEGMENT = pa.struct(
    [
        ("channel", pa.int8()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("text", pa.string()),
        ("language", pa.string()),
        ("language_prob", pa.float32()),
        # Whisper's top language candidates on the audio of the window this segment was decoded
        # in (null when the language was given): what the audio sounds like, whatever was decoded
        ("audio_languages", pa.list_(pa.struct([("language", pa.string()), ("prob", pa.float32())]))),
        ("avg_logprob", pa.float32()),
        ("no_speech_prob", pa.float32()),
        ("compression_ratio", pa.float32()),
    ]
)

SPAN = pa.struct([("source_id", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64())])

# Metrics travel as a JSON object {name: number}: Hugging Face datasets cannot read Arrow maps,
# and DuckDB reads JSON directly (`metrics->>'snr_db'`). Pass a dict; to_table serialises it.
METRICS = pa.string()

# One training example = one row of a shard.
EXAMPLE_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("kind", pa.string()),
        ("language", pa.string()),
        ("duration_s", pa.float64()),
        ("sample_rate", pa.int32()),
        ("num_samples", pa.int64()),
        ("audio", pa.binary()),  # two-channel 16-bit FLAC; ch0 = main speaker
        ("words", pa.list_(WORD)),
        ("segments", pa.list_(SEGMENT)),  # ASR segments with Whisper's trust signals
        ("text_ch0", pa.string()),
        ("text_ch1", pa.string()),
        # speaker ids (speaker_id below), speakers[0] the main speaker (channel 0)
        ("speakers", pa.list_(pa.string())),
        ("num_speakers", pa.int16()),
        ("overlap_ratio", pa.float32()),
        ("speech_ratio", pa.float32()),
        # quality fields; NaN where a metric was not computed
        ("snr_db", pa.float32()),
        ("dnsmos_ovrl", pa.float32()),
        ("clipping_ratio", pa.float32()),
        ("bandwidth_hz", pa.float32()),
        ("lid_language", pa.string()),
        ("lid_prob", pa.float32()),
        ("roundtrip_cer", pa.float32()),
        ("metrics", METRICS),  # every other metric a filter computed, by name
        ("seed", pa.int64()),
        ("params", pa.string()),  # JSON: per-example draws (turn-taking, augmentation, casting)
        ("source_ids", pa.list_(pa.string())),
        ("source_spans", pa.list_(SPAN)),
        ("config_hash", pa.string()),
        ("pipeline_version", pa.string()),
    ],
    metadata={"tandem.schema": "examples", "tandem.schema_version": str(SCHEMA_VERSION)},
)

SOURCE_SCHEMA = pa.schema(
    [
        ("source_id", pa.string()),  # hash of the decoded audio (or of the script, for synthetic)
        ("uri", pa.string()),  # absolute (resolved), wherever the job ran
        ("kind", pa.string()),
        ("format", pa.string()),
        ("orig_sample_rate", pa.int32()),
        ("orig_channels", pa.int16()),
        ("duration_s", pa.float64()),
        ("bytes", pa.int64()),
        ("status", pa.string()),  # accepted | rejected | duplicate
        ("num_examples", pa.int32()),
        ("work_key", pa.string()),  # hash(source id or uri, config hash): what resume skips on
        ("config_hash", pa.string()),
        ("run_id", pa.string()),
        # the input as the user named it (manifest entry, path under the directory or glob as
        # typed); last, so files written before it read with it null
        ("uri_given", pa.string()),
    ],
    metadata={"tandem.schema": "sources", "tandem.schema_version": str(SCHEMA_VERSION)},
)

# Dedup signatures beside the shards (kinds `dedup` and `dupes`): filters/dedup.py computes them.
SIGNATURE_SCHEMA = pa.schema([
    ("example_id", pa.string()),
    ("source_id", pa.string()),
    ("audio_hash", pa.binary(16)),  # None when exact dedup is off or the example has no audio
    ("minhash", pa.list_(pa.uint32())),  # None when the transcript is too short to compare
    # Chromaprint items of the mix of both channels, quiet items 0 (None: near_audio off, no audio)
    ("fingerprint", pa.list_(pa.uint32())),
    # the examples this one was found to duplicate (its edges in the duplicate graph); kept so the
    # clusters, and so the keeper of each, can be rebuilt after a crash or by the next run
    ("duplicate_of", pa.list_(pa.string())),
])

REJECTION_SCHEMA = pa.schema(
    [
        ("rejection_id", pa.string()),
        ("uri", pa.string()),  # the input file (or script id) the rejected item came from
        ("source_id", pa.string()),
        ("example_id", pa.string()),  # null when the whole source was rejected
        ("kind", pa.string()),
        ("stage", pa.string()),  # ingest | vad | diarize | transcribe | assemble | filter | synth ...
        ("filter", pa.string()),  # filter name, or the stage name for stage failures
        ("reason", pa.string()),  # short machine-readable reason, e.g. decode_error, snr_low
        ("detail", pa.string()),  # human-readable message
        ("language", pa.string()),  # language as detected, when known
        ("duration_s", pa.float64()),
        ("metrics", METRICS),
        ("config_hash", pa.string()),
        ("run_id", pa.string()),
    ],
    metadata={"tandem.schema": "rejections", "tandem.schema_version": str(SCHEMA_VERSION)},
)

SHARD_SCHEMA = pa.schema(
    [
        ("shard_id", pa.string()),
        ("kind", pa.string()),  # shards (accepted examples) | rejected (filtered-out examples, audio kept)
        ("path", pa.string()),  # relative to OUT
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("commit_id", pa.string()),
        ("run_id", pa.string()),
    ]
)

RUN_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("job", pa.string()),
        ("started_at", pa.string()),
        ("finished_at", pa.string()),
        ("status", pa.string()),
        ("config_hash", pa.string()),
        ("config", pa.string()),  # resolved config, JSON
        ("pipeline_version", pa.string()),
        ("versions", pa.string()),  # JSON of library versions
        ("stages", pa.string()),  # JSON list of per-stage counters
        ("argv", pa.string()),
    ]
)

SCHEMAS = {
    "examples": EXAMPLE_SCHEMA,
    "sources": SOURCE_SCHEMA,
    "rejections": REJECTION_SCHEMA,
    "shards": SHARD_SCHEMA,
    "runs": RUN_SCHEMA,
}

NAN = float("nan")


def stable_hash(*parts: Any, n: int = 16) -> str:
    """Short hex id from JSON-serialisable parts; the same parts give the same id on any machine."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (bytes, bytearray, memoryview)):
            h.update(bytes(p))
        else:
            h.update(json.dumps(p, sort_keys=True, separators=(",", ":"), default=str).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:n]


def speaker_id(scope: str | None, label: str) -> str:
    """A speaker id unique across sources: `<scope>:<label>` (a diarizer's SPEAKER_00 or a
    channel's CH0 means something only within its source). A label with a ':' is an id already
    (shards since speaker ids: real `<source_id>:<label>`, synthetic `<tts>:<voice>`), so ids of
    older shards and newer ones are scoped once."""
    if ":" in label or not scope:
        return label
    return f"{scope}:{label}"


def work_key(source_key: str, config_hash: str) -> str:
    return stable_hash("work", source_key, config_hash)


def _defaults(schema: pa.Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in schema:
        if pa.types.is_floating(f.type):
            out[f.name] = NAN
        elif pa.types.is_list(f.type):
            out[f.name] = []
        elif f.name == "metrics":
            out[f.name] = {}
        else:
            out[f.name] = None
    return out


def make_row(schema: pa.Schema, **fields: Any) -> dict[str, Any]:
    """A row dict for `schema`: unknown fields are an error, missing ones get neutral defaults."""
    unknown = set(fields) - set(schema.names)
    if unknown:
        raise KeyError(f"unknown fields for {schema.metadata and schema.metadata.get(b'tandem.schema')}: {sorted(unknown)}")
    row = _defaults(schema)
    row.update(fields)
    return row


def example_row(**fields: Any) -> dict[str, Any]:
    return make_row(EXAMPLE_SCHEMA, **fields)


def rejection_row(*, uri: str, stage: str, reason: str, detail: str = "", **fields: Any) -> dict[str, Any]:
    fields.setdefault("filter", stage)
    rid = stable_hash("rej", uri, fields.get("source_id"), fields.get("example_id"), stage, fields["filter"], reason)
    return make_row(REJECTION_SCHEMA, rejection_id=rid, uri=uri, stage=stage, reason=reason, detail=detail, **fields)


def source_row(**fields: Any) -> dict[str, Any]:
    return make_row(SOURCE_SCHEMA, **fields)


def metrics_json(v: Any) -> Any:
    """A metrics dict as canonical JSON (sorted keys; NaN and inf become null)."""
    if isinstance(v, Mapping):
        clean = {}
        for k, x in v.items():
            if x is None or isinstance(x, str):
                clean[str(k)] = x
                continue
            x = float(x)
            clean[str(k)] = x if math.isfinite(x) else None
        return json.dumps(clean, sort_keys=True, separators=(",", ":"))
    return v


def metrics_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics of a row read back from a shard (JSON text) or still in memory (dict)."""
    v = row.get("metrics")
    if v is None:
        return {}
    return dict(v) if isinstance(v, Mapping) else json.loads(v)


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) to a table that conforms to `schema` exactly (column order and types)."""
    rows = list(rows)
    cols = {}
    for f in schema:
        vals = [r.get(f.name) for r in rows]
        if f.name == "metrics":
            vals = [metrics_json(v) for v in vals]
        cols[f.name] = pa.array(vals, type=f.type)
    return pa.Table.from_pydict(cols, schema=schema)


def validate(table: pa.Table, schema: pa.Schema) -> None:
    """Raise ValueError naming the first column that does not match the contract."""
    for f in schema:
        if f.name not in table.column_names:
            raise ValueError(f"missing column {f.name!r}")
        got = table.schema.field(f.name).type
        if not got.equals(f.type):
            raise ValueError(f"column {f.name!r} has type {got}, contract says {f.type}")
    extra = set(table.column_names) - set(schema.names)
    if extra:
        raise ValueError(f"columns not in the contract: {sorted(extra)}")
    if schema is EXAMPLE_SCHEMA or schema.metadata == EXAMPLE_SCHEMA.metadata:
        kinds = set(table.column("kind").to_pylist()) - set(KINDS)
        if kinds:
            raise ValueError(f"unknown kind(s) {sorted(kinds)}")


def example_table_from_rows(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    return to_table(rows, EXAMPLE_SCHEMA)


def utc_now() -> str:
    """UTC timestamp with microseconds, the one clock format of manifests, rows and run records."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"
