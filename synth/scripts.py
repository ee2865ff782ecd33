"""Dialogue scripts: the JSONL input format, its validation, and a seeded built-in generator.

One JSON object per line:
  {"dialogue_id": "d1", "language": "fr", "turns": [{"speaker": "A", "text": "..."}, ...],
   "style": "casual" (optional), "speakers": {"A": {"voice": "fr+m3", "pitch": 40, "rate": 160}} (optional)}
The first speaker to talk is the main speaker (channel 0) unless "main_speaker" names another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pipelines.core.contracts import stable_hash
from synth.params import BuiltinParams
from synth.phrasebook import CLOSINGS, GREETINGS, OPENERS, TOPICS

MAX_TURN_CHARS = 1000


class ScriptError(ValueError):
    """A dialogue script is malformed; the message names the file, the line and the reason."""


def validate_script(obj: object, where: str = "<script>", languages: list[str] | None = None) -> dict:
    """Check one script object and return it normalised; raises ScriptError naming `where`."""
    def bad(msg: str) -> ScriptError:
        return ScriptError(f"{where}: {msg}")

    if not isinstance(obj, dict):
        raise bad(f"expected a JSON object, got {type(obj).__name__}")
    did = obj.get("dialogue_id")
    if not isinstance(did, str) or not did.strip():
        raise bad("'dialogue_id' must be a non-empty string")
    lang = obj.get("language")
    if not isinstance(lang, str) or not lang:
        raise bad("'language' must be a language code such as 'en'")
    if languages is not None and lang not in languages:
        raise bad(f"language {lang!r} is not one of the job's languages {languages}")
    turns = obj.get("turns")
    if not isinstance(turns, list) or len(turns) < 2:
        raise bad("'turns' must be a list of at least two {speaker, text} objects")
    out_turns = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise bad(f"turn {i} must be an object with 'speaker' and 'text'")
        spk, text = t.get("speaker"), t.get("text")
        if not isinstance(spk, str) or not spk.strip():
            raise bad(f"turn {i}: 'speaker' must be a non-empty string")
        if not isinstance(text, str) or not any(ch.isalnum() for ch in text):
            raise bad(f"turn {i}: 'text' must contain words")
        if len(text) > MAX_TURN_CHARS:
            raise bad(f"turn {i}: text is {len(text)} characters, more than {MAX_TURN_CHARS}")
        out_turns.append({"speaker": spk.strip(), "text": " ".join(text.split())})
    speakers = list(dict.fromkeys(t["speaker"] for t in out_turns))
    if len(speakers) < 2:
        raise bad("a dialogue needs at least two speakers")
    main = obj.get("main_speaker", speakers[0])
    if main not in speakers:
        raise bad(f"'main_speaker' {main!r} does not speak in the dialogue")
    hints = obj.get("speakers") or {}
    if not isinstance(hints, dict):
        raise bad("'speakers' must map speaker -> {voice, pitch, rate}")
    for k, h in hints.items():
        if k not in speakers:
            raise bad(f"'speakers' names {k!r}, who never speaks")
        if not isinstance(h, dict) or not set(h) <= {"voice", "pitch", "rate"}:
            raise bad(f"'speakers.{k}' must be an object with voice, pitch, rate")
    style = obj.get("style")
    if style is not None and not isinstance(style, str):
        raise bad("'style' must be a string")
    return {"dialogue_id": did, "language": lang, "turns": out_turns, "style": style,
            "speakers": hints, "main_speaker": main}


def script_hash(script: dict) -> str:
    """Content id of a script (what it says, not where it came from)."""
    return stable_hash("script", script["language"], script["turns"], script.get("speakers") or {},
                       script.get("main_speaker"))


def iter_jsonl(path: str | Path, languages: list[str] | None = None) -> Iterator[tuple[int, dict | None, str | None]]:
    """Stream (line number, script, None) or (line number, None, error) over a JSONL file."""
    p = Path(path)
    try:
        f = open(p, encoding="utf-8")  # noqa: SIM115 - opened here to name the file in the error
    except OSError as e:
        raise ScriptError(f"{p}: cannot open scripts file ({e.strerror})") from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield n, None, f"{where}: not valid JSON ({e.msg} at column {e.colno})"
                continue
            try:
                yield n, validate_script(obj, where, languages), None
            except ScriptError as e:
                yield n, None, str(e)


def generate_script(rng: np.random.Generator, language: str, dialogue_id: str, p: BuiltinParams) -> dict:
    """A varied built-in dialogue: one or two topics, 4-12 turns of 1-3 sentences, openers,
    sometimes a greeting, a closing or a third speaker. Every choice comes from `rng`."""
    t_lo, t_hi = p.turns
    s_lo, s_hi = p.sentences_per_turn
    p_three = p.three_speakers_prob
    if language not in TOPICS:
        raise ScriptError(f"builtin scripts: no phrasebook for language {language!r} (have {sorted(TOPICS)})")
    topics = list(TOPICS[language])
    chosen = [topics[i] for i in rng.choice(len(topics), size=min(len(topics), int(rng.integers(1, 3))),
                                            replace=False)]
    pool = [s for t in chosen for s in TOPICS[language][t]]
    order = list(rng.permutation(len(pool)))
    speakers = ["A", "B", "C"] if rng.random() < p_three else ["A", "B"]
    n_turns = int(rng.integers(t_lo, t_hi + 1))
    turns = []
    cur = speakers[0]
    for i in range(n_turns):
        parts = []
        if i == 0 and rng.random() < 0.5:
            parts.append(GREETINGS[language][int(rng.integers(len(GREETINGS[language])))])
        elif i > 0 and rng.random() < 0.35:
            parts.append(OPENERS[language][int(rng.integers(len(OPENERS[language])))])
        for _ in range(int(rng.integers(s_lo, s_hi + 1))):
            if not order:
                order = list(rng.permutation(len(pool)))
            parts.append(pool[order.pop()])
        if i == n_turns - 1 and rng.random() < 0.5:
            parts.append(CLOSINGS[language][int(rng.integers(len(CLOSINGS[language])))])
        text = _join(parts)
        turns.append({"speaker": cur, "text": text})
        others = [s for s in speakers if s != cur]
        cur = others[int(rng.integers(len(others)))]
    return validate_script({"dialogue_id": dialogue_id, "language": language, "turns": turns,
                            "style": "+".join(chosen)}, f"builtin:{dialogue_id}")


def _join(parts: list[str]) -> str:
    out = ""
    for p in parts:
        if out and out[-1] not in ".?!" and out.endswith(","):
            p = p[0].lower() + p[1:]  # "Well," + "we are ..."
        elif out and out.split()[-1] in {"and", "et", "und", "y", "e"}:
            p = p[0].lower() + p[1:]
        out = f"{out} {p}" if out else p
    return out


def builtin_scripts(count: int, seed: int, languages: list[str], p: BuiltinParams) -> Iterator[dict]:
    """`count` dialogues, languages in turn; dialogue i depends only on (seed, i)."""
    for i in range(count):
        lang = languages[i % len(languages)]
        rng = np.random.default_rng([int(seed), i, 7])
        yield generate_script(rng, lang, f"{lang}-{seed}-{i:06d}", p)


def split_sentences(text: str) -> list[str]:
    """A turn's sentences (spoken with pauses between them); keeps the punctuation."""
    import re
    parts = re.split(r"(?<=[.!?…])\s+", text.strip())
    return [p for p in parts if any(ch.isalnum() for ch in p)] or [text]
