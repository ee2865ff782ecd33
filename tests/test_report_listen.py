"""The report people use: one HTML file that travels (plots and audio inlined), with a seeded
sample to listen to per language and kind, and per rejection reason, both channels with words."""

import base64
import io
import json
import re
import shutil

import pytest
import soundfile as sf
from catalogs import catalog
from catalogs.report import build_report

from tandem.testing.outputs import dialogue_output


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("listen") / "it's an out"
    dialogue_output(out)
    idx = build_report(out)
    return out, idx


def test_report_is_one_file_with_players_for_every_group(report):
    out, idx = report
    page = idx.read_text()
    # nothing the page loads lives beside it: a copy of index.html alone shows everything
    assert not re.findall(r"""src=['"](?!data:)""", page)
    assert "<img src='data:image/png;base64," in page
    _, groups = catalog.query(out, "SELECT DISTINCT language, kind FROM examples WHERE status = 'accepted'")
    _, reasons = catalog.query(out, "SELECT DISTINCT r.reason FROM rejections r JOIN examples e "
                                    "ON e.example_id = r.example_id AND e.status = 'rejected'")
    assert groups and reasons
    players = re.findall(r"<audio controls preload='none' src='data:(audio/[a-z]+);base64,([^']+)'>", page)
    assert len(players) == len(groups) + len(reasons)
    for mime, data in players:
        x, sr = sf.read(io.BytesIO(base64.b64decode(data)), always_2d=True)
        assert x.shape[1] == 2 and 0 < x.shape[0] / sr <= 12.5 and mime == "audio/ogg"
    s = json.loads((idx.parent / "summary.json").read_text())
    assert {r["grp"] for r in s["listen"]} == {"accepted"} | {r[0] for r in reasons}
    assert all(r["words"][0] or r["words"][1] for r in s["listen"] if r["grp"] == "accepted")


def test_the_sample_is_seeded(report, tmp_path):
    out, idx = report
    first = json.loads((idx.parent / "summary.json").read_text())["listen"]
    again = build_report(out, report_dir=tmp_path / "again")
    assert json.loads((again.parent / "summary.json").read_text())["listen"] == first
    shutil.copy(again, tmp_path / "alone.html")  # the page alone carries its audio
    assert (tmp_path / "alone.html").read_text().count("<audio") == len(first)
