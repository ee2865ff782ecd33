"""Real voices for the evaluation set: Debian packages fetched with `apt-get download` + `dpkg-deb -x`
(nothing installed) and pyannote's sample call, as utterances per speaker; and the speaker split.

Speakers are people: es-MX Allison and en-US Allison are one person (`PERSON`), so both sit in
the same part of the split.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import util as iutil
from pathlib import Path

import numpy as np
import soundfile as sf

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
    if path.suffix == ".raw":  # pocketsphinx's test utterances: headerless 16 kHz 16-bit
        return sf.read(str(path), format="RAW", subtype="PCM_16", samplerate=16000, channels=1,
                       dtype="float32")
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
    # four more people, one utterance each (not scored: their words are not written down here)
    for name in ("goforward", "numbers", "something", "tidigits/dhd.2934z"):
        p = root / PSX / f"{name}.raw"
        if p.exists():
            out[f"psx_{Path(name).name.split('.')[0]}"] = [Utt(p, 16000, None, f"{PSX}/{name}.raw")]
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




# every speaker id per language, known without fetching anything: the split depends on these alone
SPEAKERS = {
    "en": ["allison_en_us", "librivox_reader", "cards_speaker", "psx_goforward", "psx_numbers", "psx_something",
           "psx_dhd", "pyannote_diane", "pyannote_sheila"],
    **{lang: [spk for spk, _, _ in v] for lang, v in ASTERISK.items() if lang != "en"},
}
# speaker ids that must share a part: one person under two ids (en-US and es-MX Allison), and the
# two people of pyannote's sample call (the call itself is an eval file)
PERSON = {"allison_en_us": "allison", "allison_es_mx": "allison", "pyannote_diane": "pyannote_call",
          "pyannote_sheila": "pyannote_call"}
# Short answers a listener gives (core prompt texts): backchannels of the conversations.
BACKCHANNEL_WORDS = {"en": {"yes", "no", "okay", "thank you", "hello", "goodbye", "ok"},
                     "es": {"si", "sí", "no", "gracias", "hola", "adios", "adiós", "bien"},
                     "fr": {"oui", "non", "merci", "allo", "bon", "d'accord", "aurevoir", "au revoir"},
                     "it": {"sì", "si", "no", "grazie", "ciao", "bene", "arrivederci"}}


def person(speaker: str) -> str:
    return PERSON.get(speaker, speaker)


def _h(s: str) -> int:
    return int(hashlib.sha256(f"tandem-eval-split:{s}".encode()).hexdigest()[:8], 16)


def split_speakers(by_language: dict[str, list[str]]) -> dict[str, str]:
    """Speaker id -> "tune" or "report", from the ids alone (deterministic, no audio looked at).

    A file's people all come from one part, and a file needs two people of its language: a
    language with fewer than four people goes whole to one part (languages dealt alternately in
    hash order); the people of larger languages are dealt alternately in hash order, to the part
    with fewer people first. One person (PERSON) is always in one part."""
    part: dict[str, str] = {}
    small = sorted((lang for lang, v in by_language.items() if len({person(s) for s in v}) < 4), key=_h)
    for i, lang in enumerate(small):
        for s in by_language[lang]:
            part.setdefault(person(s), ("tune", "report")[i % 2])
    for lang in sorted(set(by_language) - set(small), key=_h):
        left = sorted({person(s) for s in by_language[lang]} - set(part), key=_h)
        count = {k: sum(part.get(person(s)) == k for s in by_language[lang]) for k in ("tune", "report")}
        first = min(count, key=lambda k: (count[k], k != "tune"))
        for i, p in enumerate(left):
            part[p] = first if i % 2 == 0 else ("report" if first == "tune" else "tune")
    return {s: part[person(s)] for v in by_language.values() for s in v}


def backchannels(root: Path, lang: str, pool: dict[str, list[Utt]]) -> dict[str, list[Utt]]:
    """Per speaker, short answers ("yes", "merci", "grazie") said alone: the prompts whose core
    text is one of BACKCHANNEL_WORDS, read from each asterisk voice's own directory; other
    voices get the first 0.5-0.9 s of their shortest utterances (unscored)."""
    texts = core_texts(root, lang) if lang in ASTERISK else {}
    keys = {k: v for k, v in texts.items()
            if re.sub(r"[^\w' ]", "", v.lower()).strip() in BACKCHANNEL_WORDS.get(lang, set())}
    out: dict[str, list[Utt]] = {}
    for spk, rel, verbatim in ASTERISK.get(lang, []):
        for k, v in sorted(keys.items()):
            for ext in (".wav", ".gsm"):
                p = root / rel / f"{k}{ext}"
                if p.exists():
                    sr = 8000 if ext == ".gsm" else sf.info(str(p)).samplerate
                    out.setdefault(spk, []).append(Utt(p, sr, v if verbatim else None, f"{rel}/{p.name}"))
                    break
    for spk, utts in pool.items():
        if spk not in out:
            short = sorted(utts, key=lambda u: len(u.audio))[:3]
            out[spk] = [Utt(None, u.sr, None, f"{u.source}@head", u.audio[: int(u.sr * (0.5 + 0.1 * i))])
                        for i, u in enumerate(short)]
    return out
