#!/usr/bin/env python3
"""Build the real-speech evaluation set: multi-speaker recordings made of real people's read speech.

Sources (Debian packages fetched with `apt-get download` + `dpkg-deb -x`, nothing installed):
- asterisk-core-sounds-{en,es,fr,it}-wav: one professional speaker per language (en-US and es-MX
  Allison, fr-CA June, it Carlo), 8 kHz, verbatim texts in asterisk-core-sounds-XX.
- asterisk-prompt-fr-armelle (fr, Armelle Desjardins), asterisk-prompt-es-co (es-CO, July E.
  Jimenez), asterisk-prompt-it-menardi-wav (it, Menardi): a second real speaker of the language,
  8 kHz, whose wording is not verbatim the core texts: their turns carry no reference text (STM
  IGNORE_TIME_SEGMENT_IN_SCORING), so WER is scored on the verbatim turns only.
- pocketsphinx-testdata: a LibriVox reader and a card-names speaker (English, 16 kHz, transcripts).
- pyannote.audio's sample.wav (a real two-person call): whole, as its own file, and its two
  speakers' single-speaker utterances (cut by sample.stm/rttm) as English voices.
es-MX Allison and en-US Allison are the same person, so languages are never mixed in one file:
every file is one language spoken by two to four different people. No German or Portuguese real
read speech exists in the Debian or PyPI registries: de and pt are not covered.

Each file: turns of one to two prompts, gaps and a few short overlaps (at most two voices at once),
per-speaker levels, a -70 dBFS noise floor (recordings never hold digital silence), all drawn from
`--seed`. Writes audio/<id>.wav (mono), ref/<id>.{rttm,stm,json} and manifest.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import util as iutil
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

PACKAGES = {
    "en": ["asterisk-core-sounds-en-wav", "asterisk-core-sounds-en", "pocketsphinx-testdata"],
    "es": ["asterisk-core-sounds-es-wav", "asterisk-core-sounds-es", "asterisk-prompt-es-co"],
    "fr": ["asterisk-core-sounds-fr-wav", "asterisk-core-sounds-fr", "asterisk-prompt-fr-armelle"],
    "it": ["asterisk-core-sounds-it-wav", "asterisk-core-sounds-it", "asterisk-prompt-it-menardi-wav"],
}
LANGUAGES = tuple(PACKAGES)
NOT_COVERED = {"de": "no real German read speech in the Debian or PyPI registries",
               "pt": "no real Portuguese read speech in the Debian or PyPI registries"}
SOUNDS = "usr/share/asterisk/sounds"
PSX = "usr/share/pocketsphinx/test/data"
# speaker id -> (language, directory under the extracted tree, reference text is verbatim)
ASTERISK = {
    "en": [("allison_en_us", f"{SOUNDS}/en_US_f_Allison", True)],
    "es": [("allison_es_mx", f"{SOUNDS}/es_MX_f_Allison", True), ("july_es_co", f"{SOUNDS}/es", False)],
    "fr": [("june_fr_ca", f"{SOUNDS}/fr_CA_f_June", True), ("armelle_fr", f"{SOUNDS}/fr", False)],
    "it": [("carlo_it", f"{SOUNDS}/it_IT_m_Carlo", True), ("menardi_it", f"{SOUNDS}/it_IT_f_Menardi", False)],
}
NOISE_FLOOR_DBFS = -70.0


@dataclass
class Utt:
    path: Path | None  # decoded on first use (a speaker has hundreds of prompts, a file uses a few)
    sr: int
    text: str | None  # verbatim reference text; None when not known word for word
    source: str
    _audio: np.ndarray | None = None

    @property
    def audio(self) -> np.ndarray:
        """float32 mono at `sr`, leading/trailing silence trimmed."""
        if self._audio is None:
            x, sr = read_audio(self.path)
            self._audio = trim(x, sr)
        return self._audio


class EvalBuildError(RuntimeError):
    pass


def fetch(packages: list[str], cache: Path) -> Path:
    """Download and unpack `packages` into cache/root (once); apt-get update if the lists are empty."""
    root, debs, stamps = cache / "root", cache / "debs", cache / "unpacked"
    for d in (root, debs, stamps):
        d.mkdir(parents=True, exist_ok=True)
    todo = [p for p in packages if not (stamps / p).exists()]
    if not todo:
        return root
    if shutil.which("apt-get") is None:
        raise EvalBuildError(f"apt-get not found: the evaluation set needs the Debian packages {todo}")
    cmd = ["apt-get", "download", *todo]
    r = subprocess.run(cmd, check=False, cwd=debs, capture_output=True, text=True)
    if r.returncode != 0:
        u = subprocess.run(["apt-get", "update"], check=False, capture_output=True, text=True)
        r = subprocess.run(cmd, check=False, cwd=debs, capture_output=True, text=True)
        if r.returncode != 0:
            raise EvalBuildError(
                f"`apt-get download {' '.join(todo)}` failed (apt-get update rc={u.returncode}): "
                f"{(r.stderr or u.stderr).strip()[-800:]}")
    for p in todo:
        found = sorted(debs.glob(f"{p}_*.deb"))
        if not found:
            raise EvalBuildError(f"apt-get download gave no .deb for {p} in {debs}")
        subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(root)], check=True)
        (stamps / p).write_text(found[-1].name + "\n")
    return root


def trim(x: np.ndarray, sr: int) -> np.ndarray:
    """Cut leading/trailing silence: 20 ms frames quieter than the loudest by 35 dB (or -50 dBFS)."""
    hop = max(1, sr // 50)
    n = len(x) // hop
    if n == 0:
        return x
    db = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    on = np.flatnonzero(db > max(db.max() - 35.0, -50.0))
    if len(on) == 0:
        return x[:0]
    pad = hop * 3
    return x[max(0, on[0] * hop - pad): min(len(x), (on[-1] + 1) * hop + pad)]


def raw_duration(path: Path) -> float:
    if path.suffix == ".gsm":
        return path.stat().st_size / 33 * 160 / 8000  # GSM 06.10: 33-byte frames of 160 samples
    return sf.info(str(path)).duration


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    if path.suffix == ".gsm":
        x, sr = sf.read(str(path), format="RAW", subtype="GSM610", samplerate=8000, channels=1,
                        dtype="float32")
    else:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
    return x, sr


def core_texts(root: Path, lang: str) -> dict[str, str]:
    path = root / f"usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def usable(text: str) -> bool:
    """Speech prompts only: no [tone] descriptions, no digits (spoken forms vary), 3+ words; no
    translator's (notes) or a second `key: text` left in the line, no letter lost to a '?' inside
    a sentence (core-sounds-it.txt has all three; none of them is what the speaker says)."""
    return ("[" not in text and not re.search(r"\d", text) and "\ufffd" not in text
            and "(" not in text and ":" not in text and not re.search(r"\s\?\s", text)
            and len(re.findall(r"\w+", text)) >= 3)


def asterisk_speakers(root: Path, lang: str) -> dict[str, list[Utt]]:
    texts = core_texts(root, lang)
    out: dict[str, list[Utt]] = {}
    for spk, rel, verbatim in ASTERISK[lang]:
        utts = []
        for p in sorted((root / rel).iterdir()):
            if not p.is_file() or p.suffix not in (".wav", ".gsm") or not usable(texts.get(p.stem, "")):
                continue
            # untrimmed length: prompts carry up to a second of silence around the speech
            if 1.5 <= raw_duration(p) <= 12.0:
                sr = 8000 if p.suffix == ".gsm" else sf.info(str(p)).samplerate
                utts.append(Utt(p, sr, texts[p.stem] if verbatim else None, f"{rel}/{p.name}"))
        if not utts:
            raise EvalBuildError(f"no usable prompts for {spk} under {root / rel}")
        out[spk] = utts
    return out


def sphinx_speakers(root: Path) -> dict[str, list[Utt]]:
    out: dict[str, list[Utt]] = {}
    for spk, sub in (("librivox_reader", "librivox"), ("cards_speaker", "cards")):
        d = root / PSX / sub
        name = "transcription" if sub == "librivox" else "cards.transcription"
        utts = []
        for line in (d / name).read_text().splitlines():
            m = re.match(r"\s*<s>(.*)</s>\s*\((\S+)\)", line)
            if not m:
                continue
            utts.append(Utt(d / f"{m.group(2)}.wav", 16000, " ".join(m.group(1).split()),
                            f"{PSX}/{sub}/{m.group(2)}.wav"))
        out[spk] = utts
    return out


def sample_paths() -> dict[str, Path]:
    spec = iutil.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        raise EvalBuildError("pyannote.audio is not installed (its sample.wav is part of the set)")
    d = Path(next(iter(spec.submodule_search_locations))) / "sample"
    return {k: d / f"sample.{k}" for k in ("wav", "rttm", "stm")}


def sample_speakers() -> dict[str, list[Utt]]:
    """Utterances of sample.stm during which no other speaker talks (per sample.rttm)."""
    p = sample_paths()
    x, sr = read_audio(p["wav"])
    turns = [(float(f[3]), float(f[3]) + float(f[4])) for f in (ln.split() for ln in p["rttm"].read_text().splitlines()) if f]
    out: dict[str, list[Utt]] = {}
    for line in p["stm"].read_text().splitlines():
        f = line.split(None, 5)
        if len(f) < 6:
            continue
        s, e = float(f[3]), float(f[4])
        others = sum(1 for a, b in turns if a < e and b > s and not (a <= s + 0.3 and b >= e - 0.3))
        if others:
            continue
        out.setdefault(f"pyannote_{f[2].lower()}", []).append(
            Utt(None, sr, f[5], f"pyannote/sample.wav@{s:.2f}-{e:.2f}", x[int(s * sr): int(e * sr)].copy()))
    return out


def voices(lang: str, cache: Path) -> dict[str, list[Utt]]:
    root = fetch(PACKAGES[lang], cache)
    v = asterisk_speakers(root, lang)
    if lang == "en":
        v.update(sphinx_speakers(root))
        v.update(sample_speakers())
    return v


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def build_file(fid: str, lang: str, speakers: list[str], pool: dict[str, list[Utt]], duration: float,
               rng: random.Random, p_overlap: float) -> tuple[np.ndarray, int, list[dict]]:
    """Mono mixture of `speakers` taking turns; returns audio, rate and reference segments."""
    sr = max(pool[s][0].sr for s in speakers)
    left = {s: rng.sample(pool[s], len(pool[s])) for s in speakers}
    level = {s: -23.0 + rng.uniform(-4.0, 4.0) for s in speakers}
    used = dict.fromkeys(speakers, 0)
    segs: list[dict] = []
    t, prev, prev_start, prev_first = rng.uniform(0.3, 1.0), None, 0.0, 0
    while True:
        cands = [s for s in speakers if s != prev and left[s]]
        if not cands:
            break
        spk = rng.choices(cands, weights=[1.0 / (1 + used[s]) for s in cands])[0]
        utts = [left[spk].pop() for _ in range(min(len(left[spk]), rng.choice((1, 1, 2))))]
        if segs and rng.random() < p_overlap:
            # Start inside the previous turn's tail; never more than two voices at once.
            floor = max((s["end"] for s in segs[:prev_first]), default=0.0)
            start = max(t - rng.uniform(0.2, 0.6), prev_start + 0.5, floor + 0.1)
        elif segs:
            start = t + (rng.uniform(0.15, 0.8) if rng.random() < 0.75 else rng.uniform(0.8, 2.0))
        else:
            start = t
        turn_dur = sum(len(u.audio) / u.sr for u in utts) + 0.4 * (len(utts) - 1)
        if segs and start + turn_dur > duration:
            break
        cur, turn_start, first = start, start, len(segs)
        for u in utts:
            g = np.gcd(sr, u.sr)
            a = u.audio if u.sr == sr else resample_poly(u.audio, sr // g, u.sr // g).astype(np.float32)
            a = a * np.float32(10 ** ((level[spk] - rms_db(a)) / 20))
            segs.append({"speaker": spk, "start": cur, "end": cur + len(a) / sr, "text": u.text,
                         "source": u.source, "audio": a})
            cur += len(a) / sr + rng.uniform(0.2, 0.6)
        t, prev, prev_start, prev_first = segs[-1]["end"], spk, turn_start, first
        used[spk] += 1
    total = segs[-1]["end"] + rng.uniform(0.3, 1.0)
    out = np.zeros(int(np.ceil(total * sr)) + 1, np.float32)
    for s in segs:
        i = round(s["start"] * sr)
        a = s.pop("audio")
        out[i: i + len(a)] += a[: len(out) - i]
        s["end"] = s["start"] + len(a) / sr
    nrng = np.random.default_rng(rng.getrandbits(32))
    out += nrng.standard_normal(len(out)).astype(np.float32) * np.float32(10 ** (NOISE_FLOOR_DBFS / 20))
    peak = float(np.abs(out).max())
    if peak > 0.95:
        out *= np.float32(0.95 / peak)
    return out, sr, segs


def write_refs(out: Path, fid: str, segs: list[dict]) -> dict:
    ref = out / "ref"
    ref.mkdir(parents=True, exist_ok=True)
    rttm = "".join(f"SPEAKER {fid} 1 {s['start']:.3f} {s['end'] - s['start']:.3f} <NA> <NA> {s['speaker']} <NA> <NA>\n"
                   for s in segs)
    stm = "".join(f"{fid} 1 {s['speaker']} {s['start']:.3f} {s['end']:.3f} "
                  f"{s['text'] if s['text'] is not None else 'IGNORE_TIME_SEGMENT_IN_SCORING'}\n" for s in segs)
    (ref / f"{fid}.rttm").write_text(rttm)
    (ref / f"{fid}.stm").write_text(stm)
    (ref / f"{fid}.json").write_text(json.dumps({"id": fid, "segments": [
        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()} for s in segs]},
        indent=1, ensure_ascii=False))
    return {"rttm": f"ref/{fid}.rttm", "stm": f"ref/{fid}.stm", "ref": f"ref/{fid}.json"}


def overlaps(segs: list[dict]) -> tuple[int, float]:
    ov = [min(a["end"], b["end"]) - max(a["start"], b["start"]) for i, a in enumerate(segs) for b in segs[i + 1:]
          if a["speaker"] != b["speaker"] and a["start"] < b["end"] and b["start"] < a["end"]]
    return len(ov), sum(ov)


def add_sample(out: Path) -> dict:
    """pyannote's real call, whole, with its own references (speakers renamed to the stm names)."""
    p = sample_paths()
    x, sr = read_audio(p["wav"])
    fid = "en-sample"
    sf.write(str(out / "audio" / f"{fid}.wav"), x, sr, subtype="PCM_16")
    names = {"speaker90": "pyannote_diane", "speaker91": "pyannote_sheila"}
    segs = []
    for line in p["rttm"].read_text().splitlines():
        f = line.split()
        if f:
            s = float(f[3])
            segs.append({"speaker": names.get(f[7], f[7]), "start": s, "end": s + float(f[4]), "text": None,
                         "source": "pyannote/sample.rttm"})
    refs = write_refs(out, fid, segs)
    # Keep the reference transcript's own segmentation (the rttm has none of the words).
    (out / refs["stm"]).write_text("".join(
        f"{fid} 1 pyannote_{ln.split(None, 5)[2].lower()} {' '.join(ln.split(None, 5)[3:])}\n"
        for ln in p["stm"].read_text().splitlines() if len(ln.split(None, 5)) == 6))
    n, ov = overlaps(segs)
    return {"id": fid, "wav": f"audio/{fid}.wav", **refs, "language": "en", "duration_s": round(len(x) / sr, 3),
            "sample_rate": sr, "speakers": sorted(set(names.values())), "n_segments": len(segs),
            "n_overlaps": n, "overlap_s": round(ov, 3), "origin": "pyannote.audio sample.wav (real phone call)"}


def plan(lang: str, k: int, speakers: list[str], rng: random.Random) -> list[str]:
    """Speakers of file k: the language's core voice plus others, two to four (cycling 2, 3, 4)."""
    first, others = speakers[0], speakers[1:]
    n = min(len(speakers), (2, 3, 4)[k % 3])
    return [first] + rng.sample(others, n - 1)


def build(out: Path, cache: Path, languages: list[str], files_per_language: int, duration: float,
          seed: int, p_overlap: float = 0.15, with_sample: bool = True) -> dict:
    bad = [lang for lang in languages if lang not in PACKAGES]
    if bad:
        raise EvalBuildError(f"languages {bad} not covered ({NOT_COVERED}); available: {list(PACKAGES)}")
    (out / "audio").mkdir(parents=True, exist_ok=True)
    files = []
    for lang in languages:
        pool = voices(lang, cache)
        names = list(pool)
        for k in range(files_per_language):
            fid = f"{lang}-{k + 1:02d}"
            rng = random.Random(f"{seed}:{fid}")
            spk = plan(lang, k, names, rng)
            audio, sr, segs = build_file(fid, lang, spk, pool, duration, rng, p_overlap)
            sf.write(str(out / "audio" / f"{fid}.wav"), audio, sr, subtype="PCM_16")
            n, ov = overlaps(segs)
            files.append({"id": fid, "wav": f"audio/{fid}.wav", **write_refs(out, fid, segs), "language": lang,
                          "duration_s": round(len(audio) / sr, 3), "sample_rate": sr, "speakers": spk,
                          "n_segments": len(segs), "n_overlaps": n, "overlap_s": round(ov, 3),
                          "verbatim_s": round(sum(s["end"] - s["start"] for s in segs if s["text"]), 3),
                          "origin": "built from Debian packages " + ", ".join(PACKAGES[lang])})
    if with_sample and "en" in languages:
        files.append(add_sample(out))
    manifest = {"seed": seed, "duration_target_s": duration, "p_overlap": p_overlap,
                "noise_floor_dbfs": NOISE_FLOOR_DBFS, "languages": languages, "not_covered": NOT_COVERED,
                "files": files}
    tmp = out / f"manifest.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    os.replace(tmp, out / "manifest.json")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("eval_data"))
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "tandem" / "eval-debs")
    ap.add_argument("--languages", default=",".join(LANGUAGES))
    ap.add_argument("--files-per-language", type=int, default=3)
    ap.add_argument("--duration", type=float, default=90.0, help="target seconds per file (shorter when a voice runs out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p-overlap", type=float, default=0.15)
    ap.add_argument("--no-sample", action="store_true", help="leave pyannote's sample.wav out")
    a = ap.parse_args(argv)
    try:
        m = build(a.out, a.cache, [x for x in a.languages.split(",") if x], a.files_per_language, a.duration,
                  a.seed, a.p_overlap, not a.no_sample)
    except EvalBuildError as e:
        print(f"build_eval_set: {e}", file=sys.stderr)
        return 2
    for f in m["files"]:
        print(f"{f['id']:10s} {f['language']} {f['duration_s']:6.1f}s {f['sample_rate']}Hz "
              f"overlaps={f['n_overlaps']} speakers={','.join(f['speakers'])}")
    print(f"wrote {len(m['files'])} files and {a.out / 'manifest.json'}; not covered: {', '.join(NOT_COVERED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
