"""What the report lets people hear: a seeded sample of accepted examples (one per language and
kind) and of filtered-out ones (one per rejection reason), both channels of the first seconds
with their words, inlined as Opus so `index.html` travels alone."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

CLIP_S = 12.0
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def pick(con, seed: int) -> list[dict]:
    """Which examples to play: the same ones for the same catalog and seed (md5 of id and seed)."""
    def rows(sql: str) -> list[dict]:
        cur = con.execute(sql, [str(seed)])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    acc = rows("SELECT 'accepted' AS grp, language, kind, example_id FROM examples WHERE status = 'accepted' "
               "QUALIFY row_number() OVER (PARTITION BY language, kind ORDER BY md5(example_id || ?)) = 1 "
               "ORDER BY language, kind")
    rej = rows("SELECT r.reason AS grp, e.language, e.kind, e.example_id FROM rejections r "
               "JOIN examples e ON e.example_id = r.example_id AND e.status = 'rejected' "
               "QUALIFY row_number() OVER (PARTITION BY r.reason ORDER BY md5(e.example_id || ?)) = 1 "
               "ORDER BY r.reason")
    return acc + rej


def _encode(x, sr: int) -> tuple[str, str]:
    """[channels, T] float audio as (mime, base64): Opus at its own rates, else FLAC."""
    import soundfile as sf
    buf = io.BytesIO()
    if sr in OPUS_RATES:
        sf.write(buf, x.T, sr, format="OGG", subtype="OPUS")
        mime = "audio/ogg"
    else:
        sf.write(buf, x.T, sr, format="FLAC", subtype="PCM_16")
        mime = "audio/flac"
    return mime, base64.b64encode(buf.getvalue()).decode()


def clips(out: Path, picks: list[dict], clip_s: float = CLIP_S) -> list[dict]:
    """The picked examples' first `clip_s` seconds (both channels) and words per channel."""
    import pyarrow.parquet as pq
    from pipelines.io.audio import decode_flac
    from pipelines.store.commit import committed_files
    want = {p["example_id"] for p in picks}
    found: dict[str, dict] = {}
    for path in committed_files(out, "shards") + committed_files(out, "rejected"):
        if not want - found.keys():
            break
        ids = set(pq.read_table(path, columns=["example_id"]).column(0).to_pylist())
        hit = sorted((want - found.keys()) & ids)
        if hit:
            t = pq.read_table(path, columns=["example_id", "audio", "words"], filters=[("example_id", "in", hit)])
            found.update({r["example_id"]: r for r in t.to_pylist()})
    res = []
    for p in picks:
        row = found.get(p["example_id"])
        if row is None or not row["audio"]:
            continue
        audio, sr = decode_flac(row["audio"])
        mime, data = _encode(audio[:, : int(clip_s * sr)], sr)
        words = [" ".join(w["word"] for w in row["words"] or [] if w["channel"] == ch and w["start_s"] < clip_s)
                 for ch in (0, 1)]
        res.append({**p, "mime": mime, "data": data, "words": words, "seconds": min(clip_s, audio.shape[1] / sr)})
    return res


def section(items: list[dict], seed: int) -> str:
    if not items:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(c['grp']))}</td><td>{html.escape(str(c['language']))}</td>"
        f"<td>{html.escape(str(c['kind']))}</td><td>{html.escape(c['example_id'])}</td>"
        f"<td><audio controls preload='none' src='data:{c['mime']};base64,{c['data']}'></audio></td>"
        f"<td style='text-align:left'>{html.escape(c['words'][0])}</td>"
        f"<td style='text-align:left'>{html.escape(c['words'][1])}</td></tr>" for c in items)
    return (f"<h2>Listen</h2><p>The first {CLIP_S:g} s of one accepted example per language and kind and one "
            f"filtered-out example per rejection reason (seed {seed}); left = channel 0 (the main speaker), "
            "right = channel 1.</p><table><tr><th>accepted / reason</th><th>language</th><th>kind</th>"
            f"<th>example</th><th>audio</th><th>channel 0 words</th><th>channel 1 words</th></tr>{rows}</table>")
