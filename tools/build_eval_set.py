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

- pocketsphinx-testdata's four single-utterance speakers (goforward, numbers, something, tidigits).

Speakers are split into a tuning part and a reporting part (tools/eval_sources.py
`split_speakers`: from the speaker ids alone, recorded in the manifest as `split`); every file's
people come from one part (its `part`), so defaults chosen on `tune` files are reported on voices
they never heard (`bench/realspeech.py --part report`).

Read-speech files (`<lang>-NN`): turns of one to two prompts, gaps and a few short overlaps (at
most two voices at once). Conversations (`<lang>-conv-<part>-NN`, up to four people): overlapped
turn changes, interruptions and backchannels, 10-20% of the speech overlapped
(tools/eval_conversation.py), each also as a telephone-band copy (`-tel`: 300-3400 Hz, 8 kHz,
mu-law). Per-speaker levels, a -70 dBFS noise floor (recordings never hold digital silence), all
drawn from `--seed`. Writes audio/<id>.wav (mono), ref/<id>.{rttm,stm,json} and manifest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_conversation import build_conversation, speech_and_overlap, telephone
from eval_sources import (  # noqa: F401 - re-exported for bench/fingerprint.py
    LANGUAGES,
    NOISE_FLOOR_DBFS,
    NOT_COVERED,
    PACKAGES,
    SOUNDS,
    SPEAKERS,
    EvalBuildError,
    Utt,
    backchannels,
    fetch,
    read_audio,
    sample_paths,
    split_speakers,
    trim,
    voices,
)


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


def plan(k: int, speakers: list[str], rng: random.Random, sizes: dict[str, int]) -> list[str]:
    """Speakers of file k: the part's first voice (a language's core voice when there) plus others,
    two to four (cycling 2, 3, 4); voices of one utterance only join files of three or more (two
    voices alternate, so one that runs out ends the file)."""
    first, others = speakers[0], speakers[1:]
    n = min(len(speakers), (2, 3, 4)[k % 3])
    if n == 2 and any(sizes[s] >= 3 for s in others):
        others = [s for s in others if sizes[s] >= 3]
    return [first] + rng.sample(others, n - 1)


def _entry(out: Path, fid: str, audio: np.ndarray, sr: int, segs: list[dict], lang: str, spk: list[str],
           part: str, kind: str, origin: str) -> dict:
    sf.write(str(out / "audio" / f"{fid}.wav"), audio, sr, subtype="PCM_16")
    n, ov = overlaps(segs)
    speech, ov_t = speech_and_overlap(segs)
    return {"id": fid, "wav": f"audio/{fid}.wav", **write_refs(out, fid, segs), "language": lang, "part": part,
            "kind": kind, "duration_s": round(len(audio) / sr, 3), "sample_rate": sr, "speakers": spk,
            "n_segments": len(segs), "n_overlaps": n, "overlap_s": round(ov, 3),
            "overlap_share": round(ov_t / max(speech, 1e-9), 3),
            "n_backchannels": sum(bool(x.get("backchannel")) for x in segs),
            "n_interruptions": sum(bool(x.get("interrupted")) for x in segs),
            "verbatim_s": round(sum(x["end"] - x["start"] for x in segs if x["text"]), 3), "origin": origin}


def build(out: Path, cache: Path, languages: list[str], files_per_language: int, duration: float,
          seed: int, p_overlap: float = 0.15, with_sample: bool = True, conversations: int = 1,
          conv_duration: float = 60.0) -> dict:
    bad = [lang for lang in languages if lang not in PACKAGES]
    if bad:
        raise EvalBuildError(f"languages {bad} not covered ({NOT_COVERED}); available: {list(PACKAGES)}")
    (out / "audio").mkdir(parents=True, exist_ok=True)
    split = split_speakers(SPEAKERS)
    files = []
    for lang in languages:
        pool = voices(lang, cache)
        origin = "built from Debian packages " + ", ".join(PACKAGES[lang])
        by_part = {p: [s for s in pool if split[s] == p] for p in ("tune", "report")}
        parts = [p for p in ("tune", "report") if len(by_part[p]) >= 2]
        for k in range(files_per_language):
            fid = f"{lang}-{k + 1:02d}"
            rng = random.Random(f"{seed}:{fid}")
            part = parts[k % len(parts)]
            spk = plan(k // len(parts), by_part[part], rng, {v: len(u) for v, u in pool.items()})
            audio, sr, segs = build_file(fid, lang, spk, pool, duration, rng, p_overlap)
            files.append(_entry(out, fid, audio, sr, segs, lang, spk, part, "read", origin))
        bcs = backchannels(fetch(PACKAGES[lang], cache), lang, pool)
        for part in parts:
            for k in range(conversations):
                fid = f"{lang}-conv-{part}-{k + 1:02d}"
                rng = random.Random(f"{seed}:{fid}")
                spk = [by_part[part][0]] + rng.sample(by_part[part][1:], min(3, len(by_part[part]) - 1))
                audio, sr, segs, _ = build_conversation(spk, pool, bcs, conv_duration, rng, NOISE_FLOOR_DBFS)
                files.append(_entry(out, fid, audio, sr, segs, lang, spk, part, "conversation", origin))
                tel, tsr = telephone(audio, sr)
                files.append(_entry(out, f"{fid}-tel", tel, tsr, [dict(x) for x in segs], lang, spk, part,
                                    "conversation-telephone", origin))
    if with_sample and "en" in languages:
        sample = add_sample(out)
        ref = json.loads((out / sample["ref"]).read_text())["segments"]
        speech, ov_t = speech_and_overlap(ref)
        files.append({**sample, "part": split["pyannote_diane"], "kind": "call",
                      "overlap_share": round(ov_t / speech, 3)})
    manifest = {"seed": seed, "duration_target_s": duration, "p_overlap": p_overlap,
                "noise_floor_dbfs": NOISE_FLOOR_DBFS, "languages": languages, "not_covered": NOT_COVERED,
                "split": split, "files": files}
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
    ap.add_argument("--conversations", type=int, default=1,
                    help="conversations per language and part (each also as a telephone-band copy)")
    ap.add_argument("--conv-duration", type=float, default=60.0)
    a = ap.parse_args(argv)
    try:
        m = build(a.out, a.cache, [x for x in a.languages.split(",") if x], a.files_per_language, a.duration,
                  a.seed, a.p_overlap, not a.no_sample, a.conversations, a.conv_duration)
    except EvalBuildError as e:
        print(f"build_eval_set: {e}", file=sys.stderr)
        return 2
    for f in m["files"]:
        print(f"{f['id']:22s} {f['part']:6s} {f['language']} {f['duration_s']:6.1f}s {f['sample_rate']}Hz "
              f"overlaps={f['n_overlaps']} ({f.get('overlap_share', 0):.0%} of speech) "
              f"backchannels={f.get('n_backchannels', 0)} speakers={','.join(f['speakers'])}")
    print(f"wrote {len(m['files'])} files and {a.out / 'manifest.json'}; not covered: {', '.join(NOT_COVERED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
