"""The dataset report: OUT/report/index.html with PNG plots beside it, and OUT/report/summary.json.

Everything is a DuckDB query over the catalog (OUT/catalog.duckdb) or, without one, over the
committed Parquet files directly (audio never read). Distributions are drawn from a reservoir
sample with a fixed seed (SAMPLE_SEED) so a large corpus costs bounded memory and the report is
reproducible.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from catalogs import plots as figs
from catalogs.plots import hms

SAMPLE_ROWS = 200_000
SAMPLE_SEED = 0
EXAMPLE_COLS = ["example_id", "kind", "language", "duration_s", "num_speakers", "overlap_ratio", "speech_ratio",
                "snr_db", "dnsmos_ovrl", "clipping_ratio", "bandwidth_hz", "lid_language", "lid_prob",
                "roundtrip_cer", "params", "words", "metrics"]
# accepted real examples whose words the real turn-taking is measured on (reservoir, fixed seed)
REAL_TT_ROWS = 5_000


def _connect(out: Path):
    """In-memory DuckDB with views `examples` (with status), `rejections`, `sources`."""
    import duckdb
    con = duckdb.connect()
    cat = out / "catalog.duckdb"
    if cat.exists():
        con.execute("ATTACH ? AS cat (READ_ONLY)", [str(cat)])  # the driver quotes the path
        cols = ", ".join(f'"{c}"' for c in EXAMPLE_COLS)
        con.execute(f"CREATE VIEW examples AS SELECT {cols}, status FROM cat.examples")
        try:  # the catalog labels a rejected example by its own language; the report shows what was heard
            con.execute("CREATE VIEW rejections AS SELECT * REPLACE (coalesce(detected_language, language) "
                        "AS language) FROM cat.rejections")
        except duckdb.BinderException:  # a catalog built before detected_language
            con.execute("CREATE VIEW rejections AS SELECT * FROM cat.rejections")
        con.execute("CREATE VIEW sources AS SELECT * FROM cat.sources")
        return con, "catalog"
    from pipelines.core.contracts import EXAMPLE_SCHEMA, REJECTION_SCHEMA, SOURCE_SCHEMA
    from pipelines.store.commit import committed_files

    def files(kind):
        return [str(p) for p in committed_files(out, kind)]

    # files go to DuckDB through its relational API, never spliced into SQL text (a quote in a path)
    cols = ", ".join(f'"{c}"' for c in EXAMPLE_COLS)
    con.register("_empty_ex", EXAMPLE_SCHEMA.empty_table())
    rel = con.sql(f"SELECT {cols}, NULL::VARCHAR AS status FROM _empty_ex")
    for kind, status in (("rejected", "rejected"), ("shards", "accepted")):
        if files(kind):
            rel = con.read_parquet(files(kind)).select(f"{cols}, '{status}' AS status").union(rel)
    rel.create_view("examples")
    for name, schema in (("rejections", REJECTION_SCHEMA), ("sources", SOURCE_SCHEMA)):
        con.register(f"_empty_{name}", schema.empty_table())
        rel = con.table(f"_empty_{name}")
        if files(name):
            rel = con.read_parquet(files(name)).union(rel)
        rel.create_view(name)
    if not files("shards") and not files("rejected") and not files("rejections"):
        raise FileNotFoundError(f"{out}: no catalog and no committed shards: nothing to report on")
    return con, "parquet"


def _rows(con, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _sample(con, col: str, where: str = "") -> dict[str, list[float]]:
    """Finite values of `col` by (kind, status), reservoir-sampled with a fixed seed."""
    sql = (f"SELECT kind, status, \"{col}\" AS v FROM examples WHERE \"{col}\" IS NOT NULL "
           f"AND NOT isnan(\"{col}\"::DOUBLE) {where} USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) "
           f"REPEATABLE ({SAMPLE_SEED})")
    out: dict[str, list[float]] = {}
    for k, s, v in con.execute(sql).fetchall():
        out.setdefault(f"{k} {s}", []).append(float(v))
    return out


def _thresholds(cfg: dict, languages: list[str]) -> dict[str, dict[str, float]]:
    """Quality thresholds to draw: per kind, and per language where a language has its own."""
    from filters.base import per_kind
    q = ((cfg or {}).get("filters") or {}).get("quality") or {}
    t = ((cfg or {}).get("filters") or {}).get("trust") or {}
    keys = {"snr_db": (q, "min_snr_db"), "dnsmos_ovrl": (q, "min_dnsmos_ovrl"),
            "clipping_ratio": (q, "max_clipping_ratio"), "bandwidth_hz": (q, "min_bandwidth_hz"),
            "speech_ratio": (q, "min_speech_ratio"), "roundtrip_cer": (t, "max_roundtrip_cer")}
    out = {}
    for col, (sec, key) in keys.items():
        out[col] = {}
        for kind in ("real", "synthetic"):
            v = per_kind(sec.get(key), kind)
            if v is not None:
                out[col][kind] = float(v)
            for lang in languages:
                lv = per_kind(sec.get(key), kind, lang)
                if lv is not None and lv != v:
                    out[col][f"{kind} {lang}"] = float(lv)
    return out


def build_report(out_dir: str | Path, cfg: dict | None = None, report_dir: str | Path | None = None) -> Path:
    """Write the report; returns the path of index.html."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if cfg is None:
        from pipelines.core.config import load_config
        cfg = load_config()
    out = Path(out_dir)
    if not out.exists():
        raise FileNotFoundError(f"{out}: no such output directory")
    rdir = Path(report_dir) if report_dir else out / "report"
    rdir.mkdir(parents=True, exist_ok=True)
    con, origin = _connect(out)
    thr = _thresholds(cfg, [r[0] for r in con.execute("SELECT DISTINCT language FROM examples "
                                                         "WHERE language IS NOT NULL ORDER BY 1").fetchall()])
    plots: list[tuple[str, str, str]] = []  # (file, title, caption)

    def save(fig, name, title, caption=""):
        fig.tight_layout()
        fig.savefig(rdir / name, dpi=90)
        plt.close(fig)
        plots.append((name, title, caption))

    hours = _rows(con, "SELECT language, kind, status, count(*) AS examples, sum(duration_s) / 3600 AS hours "
                       "FROM examples GROUP BY ALL ORDER BY ALL")
    # 1. hours per language and kind
    fig, ax = plt.subplots(figsize=(8, 4))
    langs = sorted({h["language"] or "?" for h in hours})
    series = sorted({(h["kind"], h["status"]) for h in hours})
    width = 0.8 / max(len(series), 1)
    for i, (k, s) in enumerate(series):
        vals = [sum(h["hours"] or 0 for h in hours if (h["language"] or "?") == lang and h["kind"] == k
                    and h["status"] == s) for lang in langs]
        ax.bar([j + i * width for j in range(len(langs))], vals, width, label=f"{k} {s}",
               hatch="//" if s == "rejected" else None, alpha=0.6 if s == "rejected" else 1.0)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(langs))], langs)
    ax.set_ylabel("hours")
    ax.legend(fontsize=8)
    ax.set_title("Hours per language and kind")
    save(fig, "hours.png", "Hours per language and kind", "Accepted and filtered-out hours.")

    # 2. durations
    d = _sample(con, "duration_s")
    fig, ax = plt.subplots(figsize=(8, 4))
    bins = figs.bins([v for vals in d.values() for v in vals], 30)
    for lab, vals in sorted(d.items()):
        ax.hist(vals, bins=bins, alpha=0.6, label=lab)
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("examples")
    ax.legend(fontsize=8)
    ax.set_title("Example durations")
    save(fig, "durations.png", "Duration histogram")

    # 3. quality distributions with thresholds
    qcols = ["snr_db", "dnsmos_ovrl", "clipping_ratio", "bandwidth_hz", "speech_ratio", "roundtrip_cer"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    quality_summary = {}
    for ax, col in zip(axes.flat, qcols):
        data = _sample(con, col)
        quality_summary[col] = {lab: _pct(vals) for lab, vals in data.items()}
        if col == "roundtrip_cer":  # per language, each with its own threshold
            figs.by_language(ax, _sample_by_language(con, col), thr.get(col, {}))
            continue
        # thresholds only of the kinds this panel holds, one line per value
        kinds = {lab.split(" ", 1)[0] for lab in data}
        lines = figs.threshold_lines({k: v for k, v in thr.get(col, {}).items() if k.split(" ", 1)[0] in kinds})
        bins = figs.bins([v for vals in data.values() for v in vals] + list(lines))
        for lab, vals in sorted(data.items()):
            ax.hist(vals, bins=bins, alpha=0.55, label=f"{lab} (n={len(vals)})")
        for j, (v, who) in enumerate(sorted(lines.items())):
            ax.axvline(v, color="red" if who.startswith("real") else "purple", ls=("--", ":", "-.")[min(j, 2)],
                       lw=1.2, label=f"threshold {v:g}: {who}")
        ax.set_title(col)
        if data:
            ax.legend(fontsize=7)
    fig.suptitle("Quality distributions (dashed: filter thresholds)")
    save(fig, "quality.png", "Quality distributions",
         "Vertical lines: the thresholds of the config given, per kind and per language where one differs.")

    # 4. rejection reasons
    rej = _rows(con, "SELECT stage, filter, reason, count(*) AS n, sum(CASE WHEN isnan(duration_s) THEN 0 "
                     "ELSE duration_s END) / 3600 AS hours FROM rejections GROUP BY ALL ORDER BY n DESC")
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(rej) + 1)))
    labels = [f"{r['stage']}/{r['filter']}: {r['reason']}" for r in rej][::-1]
    ax.barh(labels or ["(none)"], [r["n"] for r in rej][::-1] or [0])
    ax.set_xlabel("rejections")
    ax.set_title("Rejection reasons")
    save(fig, "rejections.png", "Rejection reasons")
    heard = _rows(con, "SELECT language, count(*) AS n FROM rejections WHERE reason = 'language_other' "
                       "GROUP BY ALL ORDER BY n DESC")

    # 5. speakers per example, 6. overlap
    spk = _rows(con, "SELECT num_speakers, kind, count(*) AS n FROM examples WHERE status = 'accepted' "
                     "GROUP BY ALL ORDER BY ALL")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    figs.speaker_counts(axes[0], spk)
    ov = _sample(con, "overlap_ratio", "AND status = 'accepted'")
    for lab, vals in sorted(ov.items()):
        axes[1].hist(vals, bins=figs.bins([v for vs in ov.values() for v in vs]), alpha=0.6, label=lab)
    axes[1].set_xlabel("overlap ratio")
    if ov:
        axes[1].legend(fontsize=8)
    axes[1].set_title("Overlapping speech")
    save(fig, "speakers_overlap.png", "Speakers per example and overlap ratio")

    # 7. turn-taking of synthetic data, measured on the words (pipelines/core/turntaking.py)
    tt = _turn_taking(con)
    if tt["dialogues"]:
        save(figs.turn_taking(plt, tt), "turn_taking.png", "Turn-taking of synthetic dialogues, measured",
             "Moshi Table 9 definitions on each channel's words: IPU, pause, gap, overlap seconds per minute "
             "against Fisher; floor-transfer offsets (negative: overlapped), pause and overlap lengths, "
             "backchannels per minute of each dialogue. Regenerate with: tandem report OUT.")
    tt_real = _real_turn_taking(con)
    from catalogs import listen
    players = listen.clips(out, listen.pick(con, SAMPLE_SEED))
    sources = _rows(con, "SELECT kind, status, count(*) AS n, sum(duration_s) / 3600 AS hours FROM sources "
                         "GROUP BY ALL ORDER BY ALL")
    summary = {
        "out_dir": str(out), "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "queried": origin, "sample_rows": SAMPLE_ROWS, "sample_seed": SAMPLE_SEED,
        "totals": _rows(con, "SELECT status, count(*) AS examples, sum(duration_s) / 3600 AS hours "
                             "FROM examples GROUP BY ALL ORDER BY ALL"),
        "hours": hours, "sources": sources, "rejections": rej, "rejected_languages_heard": heard,
        "quality": quality_summary, "thresholds": thr,
        "speakers": spk, "turn_taking": {k: v for k, v in tt.items() if k != "lists"},
        "turn_taking_real": tt_real,
        "plots": [p[0] for p in plots],
        "listen": [{k: v for k, v in c.items() if k != "data"} for c in players],
    }
    con.close()
    (rdir / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))
    # one file that travels: plots inlined (the PNGs stay beside it), audio inlined as Opus
    inline = [(f"data:image/png;base64,{base64.b64encode((rdir / f).read_bytes()).decode()}", t, c, f)
              for f, t, c in plots]
    (rdir / "index.html").write_text(_html(summary, inline, listen.section(players, SAMPLE_SEED)))
    return rdir / "index.html"


def _sample_by_language(con, col: str) -> dict[str, list[float]]:
    """Finite values of `col` per language (every kind and status), sampled as _sample does."""
    sql = (f"SELECT coalesce(language, '?'), \"{col}\" FROM examples WHERE \"{col}\" IS NOT NULL "
           f"AND NOT isnan(\"{col}\"::DOUBLE) USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) REPEATABLE ({SAMPLE_SEED})")
    out: dict[str, list[float]] = {}
    for lang, v in con.execute(sql).fetchall():
        out.setdefault(lang, []).append(float(v))
    return out


def _turn_taking(con) -> dict:
    """Per-minute figures (pooled) and the measured events of sampled synthetic examples."""
    from pipelines.core.turntaking import FISHER, per_minute
    ms: list[dict] = []
    cur = con.execute(f"SELECT params FROM examples WHERE kind = 'synthetic' AND status = 'accepted' "
                      f"AND params IS NOT NULL USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) REPEATABLE ({SAMPLE_SEED})")
    while batch := cur.fetchmany(4096):
        for (p,) in batch:
            try:
                q = json.loads(p)  # the figures heard on the audio; older examples have only the words'
                m = q.get("turn_taking_audio") or q.get("turn_taking")
            except (ValueError, TypeError, AttributeError):
                continue
            if m and m.get("span_s"):
                ms.append(m)
    lists = {"fto_s": [x for m in ms for x in m["fto_s"]], "pauses_s": [x for m in ms for x in m["pauses_s"]],
             "overlaps_s": [x for m in ms for x in m["overlaps_s"]],
             "backchannels_per_min": [60.0 * m.get("backchannels", 0) / m["span_s"] for m in ms]}
    return {"dialogues": len(ms), "per_minute": per_minute(ms), "fisher": FISHER, "lists": lists,
            **{k: _pct(v) for k, v in lists.items()}}


def _real_turn_taking(con) -> dict:
    """Turn-taking of accepted real examples from their words (catalogs/turns.py)."""
    from catalogs.turns import real_turn_taking
    cur = con.execute(f"SELECT metrics, words FROM examples WHERE kind = 'real' AND status = 'accepted' "
                      f"USING SAMPLE reservoir({REAL_TT_ROWS} ROWS) REPEATABLE ({SAMPLE_SEED})")
    return real_turn_taking({"metrics": m, "words": w} for batch in iter(lambda: cur.fetchmany(1024), [])
                            for m, w in batch)


def _pct(vals: list[float]) -> dict[str, float]:
    import numpy as np
    if not vals:
        return {"n": 0}
    a = np.asarray(vals, dtype=float)
    return {"n": int(a.size), "mean": float(a.mean()), "p05": float(np.percentile(a, 5)),
            "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95))}


def _json_default(o):
    return float(o) if isinstance(o, (int, float)) else str(o)


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p><i>none</i></p>"
    cols = list(rows[0])

    def cell(c, v):
        if c == "hours" and isinstance(v, (int, float)):
            return hms(3600 * v)  # durations read as h:mm:ss
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))
    head = "".join(f"<th>{'duration (h:mm:ss)' if c == 'hours' else html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(c, r[c])}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _tt_rows(tt: dict) -> list[dict]:
    if not tt.get("dialogues"):
        return []
    pm, fi = tt["per_minute"], tt["fisher"]
    return [{"figure": k, "measured": pm[k], "Fisher": fi[k], "difference": f"{100 * (pm[k] / fi[k] - 1):+.0f}%"}
            for k in fi]


def _html(s: dict, plots: list[tuple[str, str, str, str]], players: str = "") -> str:
    figs = "".join(f"<h2>{html.escape(t)}</h2><p>{html.escape(c)}</p>"
                   f"<img src='{src}' data-file='{html.escape(f)}' alt='{html.escape(t)}'>" for src, t, c, f in plots)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tandem dataset report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>tandem dataset report</h1><p>{html.escape(s['out_dir'])} &middot; generated {s['generated_at']} from the
{s['queried']} &middot; distributions from a reservoir sample of at most {s['sample_rows']} rows (seed
{s['sample_seed']})</p>
<h2>Totals</h2>{_table(s['totals'])}<h2>Hours by language, kind and status</h2>{_table(s['hours'])}
<h2>Sources</h2>{_table(s['sources'])}<h2>Rejections</h2>{_table(s['rejections'])}
<h2>Languages heard in off-language rejections</h2>{_table(s['rejected_languages_heard'])}
<h2>Turn-taking of synthetic dialogues (s per minute)</h2>{_table(_tt_rows(s.get('turn_taking') or {}))}
<h2>Turn-taking of curated real conversation (s per minute, {(s.get('turn_taking_real') or {}).get('dialogues', 0)}
accepted examples; overlap near zero on real calls means overlap is being lost)</h2>
{_table(_tt_rows(s.get('turn_taking_real') or {}))}
{players}{figs}</body></html>"""
