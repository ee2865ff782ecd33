"""Real people's speech (Debian packages, pyannote's sample call) through the curation chain with the
default config: the default filters accept clean real speech in en/fr/es/it.

The set is built by tools/build_eval_set.py, which fetches the Debian packages itself with
`apt-get download` (cached under ~/.cache/tandem/eval-debs); without apt or the archive the build
fails and so does this test, with the reason.
"""

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["en", "fr", "es", "it"]


def build(out: Path, *args: str) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_eval_set.py"), "--out", str(out), *args],
                       check=False, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (f"building the real-speech set failed (it needs apt-get and the Debian archive "
                               f"for asterisk-core-sounds-*, asterisk-prompt-*, pocketsphinx-testdata):\n"
                               f"{r.stderr[-2000:]}")
    return json.loads((out / "manifest.json").read_text())


def bench():
    spec = importlib.util.spec_from_file_location("realspeech", ROOT / "bench" / "realspeech.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("realspeech")
    return d, build(d, "--languages", ",".join(LANGS), "--files-per-language", "1", "--duration", "20",
                    "--conv-duration", "30")


def test_set_is_real_multi_speaker_speech_with_references(small_set, tmp_path):
    d, man = small_set
    files = {f["id"]: f for f in man["files"]}
    read = sorted(k for k, f in files.items() if f["kind"] in ("read", "call"))
    assert read == ["en-01", "en-sample", "es-01", "fr-01", "it-01"]
    assert set(man["not_covered"]) == {"de", "pt"}
    for f in man["files"]:
        assert len(set(f["speakers"])) >= 2, f
        rttm = [ln.split() for ln in (d / f["rttm"]).read_text().splitlines()]
        assert {x[7] for x in rttm} == set(f["speakers"])
        assert all(0 <= float(x[3]) and float(x[3]) + float(x[4]) <= f["duration_s"] + 1e-3 for x in rttm)
        stm = (d / f["stm"]).read_text().splitlines()
        assert len(stm) >= 2 and any("IGNORE_TIME_SEGMENT_IN_SCORING" not in ln for ln in stm)
    # the second voice of fr/es/it is another person of that language (not the other languages' speaker)
    assert files["fr-01"]["speakers"] == ["june_fr_ca", "armelle_fr"]
    assert files["es-01"]["speakers"] == ["allison_es_mx", "july_es_co"]
    assert files["it-01"]["speakers"] == ["carlo_it", "menardi_it"]
    # seeded: the same seed gives the same audio, another seed other audio
    again = build(tmp_path / "a", "--languages", "fr", "--files-per-language", "1", "--duration", "20")
    other = build(tmp_path / "b", "--languages", "fr", "--files-per-language", "1", "--duration", "20",
                  "--seed", "1")
    digest = [hashlib.sha256((p / "audio" / "fr-01.wav").read_bytes()).hexdigest()
              for p in (d, tmp_path / "a", tmp_path / "b")]
    assert again["files"][0]["id"] == other["files"][0]["id"] == "fr-01"
    assert digest[0] == digest[1] != digest[2]


def test_default_filters_accept_clean_real_speech(small_set):
    from pipelines.core.config import load_config
    d, man = small_set
    results = bench().run(man, d, load_config(), log=lambda *a: None)
    assert [r["id"] for r in results] == [f["id"] for f in man["files"]]
    for r in results:
        assert r["status"] == "ok" and r.get("examples"), (r["id"], r.get("error"))
        for e in r["examples"]:
            # read speech and the call are clean; the built conversations (10-20% overlapped, some
            # telephone-band) can score under the DNSMOS limit set on read speech (fr 30 s: 2.16 <
            # 2.2): only quality may reject them
            assert e["accepted"] or (r["kind"].startswith("conversation") and e["rejected_by"] == ["quality"]), \
                (r["id"], e["reasons"])
            assert not any(x.startswith("language") for x in e["reasons"]), (r["id"], e["reasons"])
            assert e["lid_language"] == r["language"], (r["id"], e["lid_language"])
    # the real call, split onto two channels by its reference turns (the example's own score moves
    # with the diarization: 2.28 to 2.88 measured), scores below the old DNSMOS threshold (2.5) and
    # the calibrated quality filter keeps it
    sub = {**man, "files": [f for f in man["files"] if f["id"] == "en-sample"]}
    ref_split = bench().calibrate(sub, d, load_config(), snrs=(), log=lambda *a: None)["clean"][0]
    assert ref_split["q.dnsmos_ovrl"] < 2.5 and ref_split["keep"], ref_split


def test_real_speech_with_noise_is_rejected(small_set):
    # the same real speech with white noise at 5 dB SNR fails the default quality thresholds
    from pipelines.core.config import load_config
    d, man = small_set
    sub = {**man, "files": [f for f in man["files"] if f["id"] in ("fr-01", "en-sample")]}
    cal = bench().calibrate(sub, d, load_config(), snrs=(5.0,), log=lambda *a: None)
    assert [r["keep"] for r in cal["clean"]] == [True, True], cal["clean"]
    assert [r["keep"] for r in cal["snr5"]] == [False, False], cal["snr5"]
    assert all(r["reason"] in ("dnsmos_low", "snr_low") for r in cal["snr5"])


def test_speakers_split_into_disjoint_tuning_and_reporting_parts(small_set):
    _, man = small_set
    split = man["split"]
    assert set(split.values()) == {"tune", "report"}
    # one person is one part (en-US and es-MX Allison), whatever languages are built
    assert split["allison_en_us"] == split["allison_es_mx"]
    for f in man["files"]:
        assert {split[s] for s in f["speakers"]} == {f["part"]}, f["id"]
    parts = {p: {s for f in man["files"] if f["part"] == p for s in f["speakers"]} for p in ("tune", "report")}
    assert parts["tune"] and parts["report"] and not parts["tune"] & parts["report"]
    # the split depends on the speaker ids only: a set of one language splits its people the same
    sys.path.insert(0, str(ROOT / "tools"))
    import eval_sources
    assert eval_sources.split_speakers(eval_sources.SPEAKERS) == split


def test_conversations_from_real_voices(small_set):
    d, man = small_set
    import soundfile as sf
    conv = [f for f in man["files"] if f["kind"] == "conversation"]
    tel = {f["id"]: f for f in man["files"] if f["kind"] == "conversation-telephone"}
    # every language gets one per part holding two of its people; English has four in each part
    assert {(f["language"], f["part"]) for f in conv} >= {("en", "tune"), ("en", "report")}
    assert {f["language"] for f in conv} == set(LANGS)
    assert any(len(f["speakers"]) == 4 for f in conv)
    for f in conv:
        assert 0.10 <= f["overlap_share"] <= 0.20, f
        assert f["n_overlaps"] >= 3 and f["n_backchannels"] + f["n_interruptions"] >= 1, f
        t = tel[f["id"] + "-tel"]
        assert sf.info(str(d / t["wav"])).samplerate == 8000 and t["speakers"] == f["speakers"]
        assert (d / t["rttm"]).read_text().split()[3:5] == (d / f["rttm"]).read_text().split()[3:5]
    assert sum(f["n_backchannels"] for f in conv) >= 3 and sum(f["n_interruptions"] for f in conv) >= 1
