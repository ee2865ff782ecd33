"""The report's plots read right: speaker counts on whole-number ticks, the round-trip CER panel one
line per language (with its count and threshold), thresholds shared by kinds drawn once."""

import matplotlib
import matplotlib.pyplot as plt

from catalogs import plots, report
from pipelines.core.config import load_config

matplotlib.use("Agg")


def test_speakers_per_example_on_integer_ticks():
    spk = [{"num_speakers": 1, "kind": "real", "n": 3}, {"num_speakers": 2, "kind": "real", "n": 7},
           {"num_speakers": 2, "kind": "synthetic", "n": 12}, {"num_speakers": 3, "kind": "real", "n": 1}]
    fig, ax = plt.subplots()
    plots.speaker_counts(ax, spk)
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    assert all(float(t).is_integer() for t in ax.get_yticks())
    # bars of one count sit around its tick, not on half-way positions
    centres = sorted(round(p.get_x() + p.get_width() / 2, 2) for p in ax.patches)
    assert centres == [0.8, 1.8, 2.2, 2.8]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["real (n=11)", "synthetic (n=12)"]
    plt.close(fig)


def test_roundtrip_panel_one_line_per_language_with_counts():
    cfg = load_config()
    langs = ["de", "en", "es", "fr", "it", "pt"]
    thr = report._thresholds(cfg, langs)["roundtrip_cer"]
    assert len(thr) == 12  # what the panel used to list: every kind x language
    data = {lang: [0.05 * (i + 1)] * (i + 2) for i, lang in enumerate(langs)}
    fig, ax = plt.subplots()
    plots.by_language(ax, data, thr)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"{lang} (n={i + 2}, max {thr.get('synthetic ' + lang, thr['synthetic']):g})"
                      for i, lang in enumerate(langs)]
    plt.close(fig)


def test_threshold_lines_shared_values_drawn_once():
    lines = plots.threshold_lines({"real": 0.35, "synthetic": 0.35, "synthetic fr": 0.65})
    assert lines == {0.35: "real, synthetic", 0.65: "synthetic fr"}
