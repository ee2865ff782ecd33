"""Language from the audio (filters.language min_heard_accepted / min_heard_transcript): how much of
Whisper's language probability on the audio the six languages get, per file, through the real
curation chain and the default filters.

    .venv/bin/python bench/language_audio.py [--eval eval_data] [--calls ../shared/eval-conv] [--json out.json]

Tuning rows: espeak dialogues in 13 languages outside the six (synthetic voices, no speakers) and,
with --eval, the eval set's `tune` files. Reporting rows: real off-language speech from Debian
packages (fillets-ng-data-nl: two Dutch voice actors; asterisk-core-sounds-ru-wav: a Russian
speaker; ktuberling-data: isolated words read in 14 languages, de and pt among them), with --eval
the eval set's `report` files, with --calls the real calls (mixed to mono).
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SIX = {"en", "fr", "de", "es", "it", "pt"}
SCRIPTS = {
    "nl": ["Hallo, hoe gaat het vandaag met je moeder?", "Het gaat veel beter, ze is gisteren thuisgekomen.",
           "Wat fijn om te horen, doe haar de groeten van mij.", "Dat zal ik doen, ze vond je bloemen prachtig."],
    "sv": ["Hej, har du sett vädret för helgen?", "Ja, det ska regna på lördag men söndagen blir solig.",
           "Då går vi på en promenad i skogen på söndag.", "Bra idé, jag tar med kaffe och smörgåsar."],
    "da": ["Hej, har du set vejrudsigten for weekenden?", "Ja, det regner på lørdag, men søndag bliver solrig.",
           "Så lad os gå en tur i skoven på søndag.", "God idé, jeg tager kaffe og madpakker med."],
    "nb": ["Hei, har du sett værmeldingen for helgen?", "Ja, det blir regn på lørdag, men søndag blir fin.",
           "Da går vi en tur i skogen på søndag.", "God idé, jeg tar med kaffe og matpakke."],
    "fi": ["Hei, oletko nähnyt viikonlopun sääennusteen?", "Kyllä, lauantaina sataa mutta sunnuntai on aurinkoinen.",
           "Mennään sitten metsään kävelylle sunnuntaina.", "Hyvä idea, otan mukaan kahvia ja voileipiä."],
    "cs": ["Ahoj, viděl jsi předpověď počasí na víkend?", "Ano, v sobotu bude pršet, ale neděle bude slunečná.",
           "Tak pojďme v neděli na procházku do lesa.", "Dobrý nápad, vezmu kávu a chlebíčky."],
    "ro": ["Bună, ai văzut prognoza meteo pentru weekend?", "Da, sâmbătă va ploua, dar duminică va fi însorit.",
           "Atunci hai să mergem la o plimbare în pădure duminică.", "Bună idee, aduc cafea și sandviciuri."],
    "hu": ["Szia, láttad a hétvégi időjárás-jelentést?", "Igen, szombaton esni fog, de vasárnap napos lesz.",
           "Akkor menjünk vasárnap sétálni az erdőbe.", "Jó ötlet, hozok kávét és szendvicseket."],
    "tr": ["Merhaba, hafta sonu için hava durumunu gördün mü?", "Evet, cumartesi yağmur yağacak ama pazar güneşli.",
           "O zaman pazar günü ormanda yürüyüşe çıkalım.", "İyi fikir, kahve ve sandviç getiririm."],
    "ca": ["Hola, has vist la previsió del temps per al cap de setmana?", "Sí, dissabte plourà però diumenge farà sol.",
           "Doncs anem a caminar pel bosc diumenge.", "Bona idea, portaré cafè i entrepans."],
    "pl": ["Cześć, widziałeś prognozę pogody na weekend?", "Tak, w sobotę będzie padać, ale niedziela będzie słoneczna.",
           "To chodźmy w niedzielę na spacer do lasu.", "Dobry pomysł, wezmę kawę i kanapki."],
    "af": ["Hallo, het jy die weervoorspelling vir die naweek gesien?", "Ja, dit gaan Saterdag reën, maar Sondag sal sonnig wees.",
           "Kom ons gaan dan Sondag in die bos stap.", "Goeie idee, ek bring koffie en toebroodjies."],
    "el": ["Γεια σου, είδες τον καιρό για το Σαββατοκύριακο;", "Ναι, το Σάββατο θα βρέξει αλλά η Κυριακή θα έχει ήλιο.",
           "Τότε πάμε για περίπατο στο δάσος την Κυριακή.", "Καλή ιδέα, θα φέρω καφέ και σάντουιτς."],
}
VOICES = ({"A": ("m3", 30), "B": ("f2", 75)}, {"A": ("m7", 55), "B": ("f4", 90)})
DEBS = ["fillets-ng-data-nl", "asterisk-core-sounds-ru-wav", "ktuberling-data"]


def _clip(x: np.ndarray, sr: int) -> np.ndarray:
    x = x.mean(axis=1) if x.ndim == 2 else x
    nz = np.flatnonzero(np.abs(x) > 0.01 * (np.abs(x).max() + 1e-9))
    x = x[max(0, nz[0] - sr // 20): nz[-1] + sr // 20] if len(nz) else x
    return (0.5 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def join(paths: list[str], sr: int = 16000, gap_s: float = 0.5, max_s: float = 25.0) -> np.ndarray:
    """Clips one after another with pauses, resampled to `sr`, until `max_s`."""
    from scipy.signal import resample_poly
    out, t = [np.zeros(sr // 2, np.float32)], 0.0
    for p in paths:
        x, r = sf.read(p, dtype="float32")
        x = _clip(x, r)
        if r != sr:
            g = np.gcd(r, sr)
            x = resample_poly(x, sr // g, r // g).astype(np.float32)
        out += [x, np.zeros(int(gap_s * sr), np.float32)]
        t += len(x) / sr + gap_s
        if t > max_s:
            break
    return np.concatenate(out)


def build(work: Path, cache: Path, eval_dir: Path | None, calls: Path | None) -> list[dict]:
    """Files to run: [{id, path, language, part}]."""
    from ray_jobs.corpus import make_conversation
    sys.path.insert(0, str(ROOT / "tools"))
    from eval_sources import fetch
    files = []
    for lang, texts in SCRIPTS.items():
        for k, voices in enumerate(VOICES):
            turns = list(zip("ABAB", texts, strict=True))
            audio, _, _ = make_conversation(turns, lang, 24000, 100 + k, voices=voices)
            p = work / f"espeak_{lang}_{k}.wav"
            sf.write(p, audio, 24000, subtype="PCM_16")
            files.append({"id": p.stem, "path": str(p), "language": lang, "part": "tune", "origin": "espeak"})
    share = fetch(DEBS, cache) / "usr/share"
    rng = random.Random(0)
    for lvl in ("city", "reactor", "windoze", "pavement", "grail", "library"):
        d = share / f"games/fillets-ng/sound/{lvl}/nl"
        small, big = sorted(glob.glob(f"{d}/*-m-*.ogg")), sorted(glob.glob(f"{d}/*-v-*.ogg"))
        if small and big:
            files.append({"id": f"fillets_nl_{lvl}", "audio": join([x for pr in zip(small, big) for x in pr]),
                          "language": "nl", "part": "report", "origin": "fillets-ng-data-nl"})
    ru = sorted(glob.glob(f"{share}/asterisk/sounds/ru*/**/*.wav", recursive=True))
    rng.shuffle(ru)
    for i in range(3):
        files.append({"id": f"asterisk_ru_{i}", "audio": join(ru[i * 12:(i + 1) * 12]), "language": "ru",
                      "part": "report", "origin": "asterisk-core-sounds-ru-wav"})
    for d in sorted((share / "ktuberling/sounds").iterdir()):
        words = sorted(glob.glob(f"{d}/*.*"))
        if d.is_dir() and len(words) >= 8:
            rng.shuffle(words)
            files.append({"id": f"ktuberling_{d.name}", "audio": join(words[:20], gap_s=0.6, max_s=20.0),
                          "language": d.name, "part": "report", "origin": "ktuberling-data (isolated words)"})
    for f in files:
        if "audio" in f:
            f["path"] = str(work / f"{f['id']}.wav")
            sf.write(f["path"], f.pop("audio"), 16000, subtype="PCM_16")
    if eval_dir is not None:
        man = json.loads((eval_dir / "manifest.json").read_text())
        files += [{"id": f["id"], "path": str(eval_dir / f["wav"]), "language": f["language"],
                   "part": f.get("part") or "unsplit", "origin": "eval set"} for f in man["files"]]
    for p in sorted(calls.glob("*.*")) if calls is not None else []:
        if p.suffix in (".wav", ".opus"):
            x, sr = sf.read(p, dtype="float32", always_2d=True)
            q = work / f"call_{p.stem}.wav"
            sf.write(q, x.mean(axis=1), sr, subtype="PCM_16")
            files.append({"id": q.stem, "path": str(q), "language": "en", "part": "report", "origin": "real call"})
    return files


def run(files: list[dict], work: Path, log=print) -> list[dict]:
    from filters.language import LanguageFilter
    from filters.stage import FilterStage, stored_metrics
    from pipelines.core.config import config_hash, load_config
    from pipelines.curate.chain import curation_stages, make_items
    cfg = load_config(overrides={"filters": {"quality": {"dnsmos": False}}})
    stages = curation_stages(cfg) + [FilterStage.from_config(cfg)]
    lf = LanguageFilter.from_config(cfg)
    out = []
    for f in files:
        item = next(make_items([f["path"]], cfg, config_hash(cfg), str(work / "out")))
        for st in stages:
            item = st(item)
        for ex in (item.get("examples") or []) + (item.get("rejected_examples") or []):
            m = stored_metrics(ex)
            heard = {k[10:]: v for k, v in m.items() if k.startswith("lid.heard.")}
            d = lf.decide(m, ex)
            r = {**f, "share": sum(v for k, v in heard.items() if k in SIX),
                 "heard": sorted(heard.items(), key=lambda kv: -kv[1])[:3], "text": ex["text_ch0"][:60],
                 "verdict": "kept" if d.keep else f"{d.reason}:{d.language}"}
            out.append(r)
            log(f"{r['part']:7s} {r['id']:24s} {r['language']:3s} accepted-share {r['share']:.3f} "
                f"heard {[(k, round(v, 2)) for k, v in r['heard']]} -> {r['verdict']}")
    return out


def summary(rows: list[dict]) -> str:
    lines = []
    for part in sorted({r["part"] for r in rows}):
        rs = [r for r in rows if r["part"] == part]
        six = [r for r in rs if r["language"] in SIX]
        off = [r for r in rs if r["language"] not in SIX]
        if six:
            lines.append(f"{part}: six languages, {len(six)} examples: accepted share min "
                         f"{min(r['share'] for r in six):.3f}; language rejections "
                         f"{[(r['id'], r['verdict']) for r in six if r['verdict'].startswith('language')]}")
        if off:
            lines.append(f"{part}: other languages, {len(off)} examples: accepted share max "
                         f"{max(r['share'] for r in off):.3f}; kept {[r['id'] for r in off if r['verdict'] == 'kept']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description="Whisper's audio language vs the six languages, per file")
    ap.add_argument("--eval", type=Path, default=None, help="an eval set (tools/build_eval_set.py) to add")
    ap.add_argument("--calls", type=Path, default=None, help="a directory of real two-channel calls to add")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tandem" / "eval-debs")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(build(Path(tmp), a.cache, a.eval, a.calls), Path(tmp))
    print(summary(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
