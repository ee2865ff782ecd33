"""The report's figures, drawn on matplotlib axes from rows the report queried (no catalog here)."""

from __future__ import annotations

import math


def hms(seconds: float | None) -> str:
    """Seconds as h:mm:ss."""
    if seconds is None or not math.isfinite(float(seconds)):
        return "n/a"
    s = round(float(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def speaker_counts(ax, spk: list[dict]) -> None:
    """Accepted examples per speaker count, bars side by side per kind on integer ticks."""
    from matplotlib.ticker import MaxNLocator
    rows = [r for r in spk if r["num_speakers"] is not None]
    kinds = sorted({r["kind"] for r in rows})
    width = 0.8 / max(len(kinds), 1)
    for i, k in enumerate(kinds):
        xs = [int(r["num_speakers"]) for r in rows if r["kind"] == k]
        ys = [r["n"] for r in rows if r["kind"] == k]
        ax.bar([x + (i - (len(kinds) - 1) / 2) * width for x in xs], ys, width, label=f"{k} (n={sum(ys)})")
    counts = sorted({int(r["num_speakers"]) for r in rows})
    ax.set_xticks(counts, [str(c) for c in counts])  # a count of speakers is a whole number
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("speakers per example")
    ax.set_ylabel("accepted examples")
    if rows:
        ax.legend(fontsize=8)
    ax.set_title("Speakers per example")


def threshold_lines(thr: dict[str, float]) -> dict[float, str]:
    """{value: who} for threshold lines: the kinds and languages sharing a value on one line."""
    out: dict[float, list[str]] = {}
    for who, v in sorted(thr.items()):
        out.setdefault(v, []).append(who)
    return {v: ", ".join(ws) for v, ws in out.items()}


def by_language(ax, data: dict[str, list[float]], thr: dict[str, float]) -> None:
    """One outline histogram per language, labelled with its count and drawn with its own
    threshold in the same colour (a language without its own takes the synthetic default)."""
    edges = bins([v for vals in data.values() for v in vals] + list(thr.values()))
    for lang, vals in sorted(data.items()):
        t = thr.get(f"synthetic {lang}", thr.get("synthetic"))
        label = f"{lang} (n={len(vals)}" + (f", max {t:g})" if t is not None else ")")
        _, _, patches = ax.hist(vals, bins=edges, histtype="step", lw=1.5, label=label)
        if t is not None:
            ax.axvline(t, color=patches[0].get_edgecolor(), ls="--", lw=1.0)
    ax.set_title("roundtrip_cer by language (dashed: its threshold)")
    if data:
        ax.legend(fontsize=7)


def turn_taking(plt, tt: dict):
    from pipelines.core.turntaking import KEYS
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.4))
    pm, fi = tt["per_minute"], tt["fisher"]
    x = range(len(KEYS))
    ratio = [pm[k] / fi[k] for k in KEYS]
    axes[0].axhspan(0.9, 1.1, color="green", alpha=0.15)  # within 10% of Fisher
    axes[0].axhline(1.0, color="k", lw=0.8)
    axes[0].bar(list(x), ratio, 0.6)
    for i, k in enumerate(KEYS):
        axes[0].annotate(f"{pm[k]:.1f}\n/{fi[k]:.1f}", (i, ratio[i]), ha="center", va="bottom", fontsize=7)
    axes[0].set_xticks(list(x), list(KEYS))
    axes[0].set_ylim(0, max(1.5, max(ratio) * 1.25))
    axes[0].set_ylabel("measured / Fisher (s per minute)")
    axes[0].set_title(f"{tt['dialogues']} dialogues, {hms(60 * pm['minutes'])} (green: Fisher ±10%)", fontsize=9)
    for ax, key, label in zip(axes[1:], ("fto_s", "pauses_s", "overlaps_s", "backchannels_per_min"),
                              ("floor-transfer offset (s)", "pause length (s)", "overlap length (s)",
                               "backchannels per minute")):
        vals = tt["lists"][key]
        ax.hist(vals, bins=bins(vals, 30))
        ax.set_xlabel(label)
        if key == "fto_s":
            ax.axvline(0.0, color="k", lw=0.8)
    axes[1].set_ylabel("count")
    return fig


def bins(vals: list[float], n: int = 25):
    """Common bin edges for every series of one plot, so narrow series stay visible."""
    import numpy as np
    if not vals:
        return n
    lo, hi = float(min(vals)), float(max(vals))
    pad = max((hi - lo) * 0.02, abs(hi) * 0.01, 1e-3)
    return np.linspace(lo - pad, hi + pad, n + 1)
