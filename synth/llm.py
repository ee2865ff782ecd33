"""Dialogue scripts from an OpenAI-compatible chat endpoint (vLLM, llama.cpp serve).

POST {url}/v1/chat/completions asking for one dialogue as JSON; the reply's JSON object is found
(even inside prose or a ``` fence), validated like a JSONL script, and retried on failure.

The driver only plans the requests (`llm_requests`: language, topic, turns, seed per dialogue);
the synthesis workers send them (`fetch_script`), each reply cached by (prompt, seed, model,
temperature) under OUT/_llm_cache, so a rerun resumes instead of asking again. A server that
cannot be reached is a transient failure (retried, never a rejection); a server that keeps
answering without a usable dialogue rejects that dialogue.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import numpy as np
from pipelines.core.contracts import stable_hash
from pipelines.core.stage import TransientError
from synth.params import LlmParams
from synth.phrasebook import TOPICS
from synth.scripts import ScriptError, validate_script

LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
                  "pt": "Portuguese"}


class LLMError(RuntimeError):
    """The chat endpoint replied, but with no usable dialogue."""


class LLMUnavailable(TransientError):
    """The chat endpoint could not be reached or failed on the server side."""


def build_messages(language: str, topic: str, turns: int) -> list[dict]:
    lang = LANGUAGE_NAMES.get(language, language)
    return [
        {"role": "system", "content": "You write natural spoken dialogues for speech synthesis. "
                                       "Reply with one JSON object only."},
        {"role": "user", "content": (
            f"Write a casual spoken conversation in {lang} between two people, A and B, about {topic}. "
            f"About {turns} turns, short sentences, no numbers written as digits, no stage directions. "
            'Reply with JSON: {"turns": [{"speaker": "A", "text": "..."}, {"speaker": "B", "text": "..."}]}')},
    ]


def parse_dialogue(reply: str) -> dict:
    """The first JSON object in `reply` that has "turns" (a fenced block or bare JSON)."""
    cands = re.findall(r"```(?:json)?\s*(.*?)```", reply, flags=re.DOTALL) + [reply]
    for c in cands:
        start = c.find("{")
        while start != -1:
            try:
                obj, _ = json.JSONDecoder().raw_decode(c[start:])
                if isinstance(obj, dict) and "turns" in obj:
                    return obj
            except json.JSONDecodeError:
                pass
            start = c.find("{", start + 1)
    raise LLMError(f"no JSON dialogue with 'turns' in the reply: {reply[:200]!r}")


class ChatClient:
    """Minimal client for /v1/chat/completions with retries."""

    def __init__(self, url: str, model: str = "default", api_key: str | None = None, timeout_s: float = 120.0,
                 retries: int = 3, backoff_s: float = 0.5):
        self.url = url.rstrip("/") + "/v1/chat/completions"
        self.model, self.api_key, self.timeout_s = model, api_key, float(timeout_s)
        self.retries, self.backoff_s = max(1, int(retries)), float(backoff_s)

    def complete(self, messages: list[dict], temperature: float = 0.9, seed: int | None = None) -> str:
        import requests
        body = {"model": self.model, "messages": messages, "temperature": temperature}
        if seed is not None:
            body["seed"] = int(seed)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        r = requests.post(self.url, json=body, headers=headers, timeout=self.timeout_s)
        if r.status_code >= 500 or r.status_code == 429:
            raise LLMUnavailable(f"{self.url}: HTTP {r.status_code}: {r.text[:200]}")
        if r.status_code != 200:
            raise LLMError(f"{self.url}: HTTP {r.status_code}: {r.text[:200]}")
        try:
            return r.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(f"{self.url}: unexpected reply {r.text[:200]!r}") from None

    def dialogue(self, language: str, topic: str, turns: int, dialogue_id: str, seed: int,
                 temperature: float = 0.9) -> dict:
        """One validated script; retries on HTTP errors and unusable replies. Raises LLMError when
        the server answered but never usably, LLMUnavailable when it was never reached."""
        import requests
        errors: list[str] = []
        answered = False
        for attempt in range(self.retries):
            try:
                reply = self.complete(build_messages(language, topic, turns), temperature, seed + attempt)
                answered = True
                obj = parse_dialogue(reply)
                obj = {"dialogue_id": dialogue_id, "language": language, "style": f"llm:{topic}",
                       "turns": obj["turns"]}
                return validate_script(obj, f"{self.url} ({dialogue_id}, attempt {attempt + 1})")
            except (LLMError, ScriptError) as e:
                answered = True
                errors.append(str(e))
            except (LLMUnavailable, requests.RequestException) as e:
                errors.append(f"{type(e).__name__}: {e}")
            time.sleep(self.backoff_s * attempt)
        cls = LLMError if answered else LLMUnavailable
        raise cls(f"{self.url}: no usable dialogue after {self.retries} attempts: {errors[-1]}")


def llm_requests(count: int, seed: int, languages: list[str], p: LlmParams) -> Iterator[dict]:
    """`count` planned dialogues (languages in turn, topic, turns and request seed drawn from the job
    seed); nothing is sent here."""
    t_lo, t_hi = p.turns
    topics = list(TOPICS["en"])
    for i in range(count):
        lang = languages[i % len(languages)]
        rng = np.random.default_rng([int(seed), i, 11])
        topic = topics[int(rng.integers(len(topics)))]
        turns = int(rng.integers(t_lo, t_hi + 1))
        yield {"index": i, "language": lang, "topic": topic, "turns": turns,
               "dialogue_id": f"llm-{lang}-{seed}-{i:06d}", "seed": int(rng.integers(2**31))}


def request_key(req: dict, p: LlmParams) -> str:
    """The cache key of a request: its prompt, seed, model and temperature."""
    return stable_hash("llm-script", build_messages(req["language"], req["topic"], req["turns"]), req["seed"],
                       p.model, p.temperature, n=32)


def fetch_script(req: dict, p: LlmParams, cache_dir: str | None) -> dict:
    """The script of a planned request: from the cache, else from the server (then cached)."""
    from pathlib import Path
    key = request_key(req, p)
    path = Path(cache_dir) / f"{key}.json" if cache_dir else None
    if path is not None and path.exists():
        return validate_script(json.loads(path.read_text()), str(path))
    client = ChatClient(p.url, p.model, p.api_key, p.timeout_s, p.retries)
    script = client.dialogue(req["language"], req["topic"], req["turns"], req["dialogue_id"], req["seed"],
                             p.temperature)
    if path is not None:
        from pipelines.io.files import write_json_atomic
        write_json_atomic(script, path)
    return script
