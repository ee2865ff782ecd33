"""Dialogue scripts from an OpenAI-compatible chat endpoint (vLLM, llama.cpp serve).

POST {url}/v1/chat/completions asking for one dialogue as JSON; the reply's JSON object is found
(even inside prose or a ``` fence), validated like a JSONL script, and retried on failure.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import numpy as np
from tandem.synth.phrasebook import TOPICS
from tandem.synth.scripts import ScriptError, validate_script

LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
                  "pt": "Portuguese"}


class LLMError(RuntimeError):
    """The chat endpoint failed or replied with no usable dialogue."""


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
        if r.status_code != 200:
            raise LLMError(f"{self.url}: HTTP {r.status_code}: {r.text[:200]}")
        try:
            return r.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(f"{self.url}: unexpected reply {r.text[:200]!r}") from None

    def dialogue(self, language: str, topic: str, turns: int, dialogue_id: str, seed: int,
                 temperature: float = 0.9) -> dict:
        """One validated script; retries on HTTP errors and unusable replies."""
        import requests
        errors = []
        for attempt in range(self.retries):
            try:
                reply = self.complete(build_messages(language, topic, turns), temperature, seed + attempt)
                obj = parse_dialogue(reply)
                obj = {"dialogue_id": dialogue_id, "language": language, "style": f"llm:{topic}",
                       "turns": obj["turns"]}
                return validate_script(obj, f"{self.url} ({dialogue_id}, attempt {attempt + 1})")
            except (LLMError, ScriptError, requests.RequestException) as e:
                errors.append(str(e))
                time.sleep(self.backoff_s * attempt)
        raise LLMError(f"{self.url}: no usable dialogue after {self.retries} attempts: {errors[-1]}")


def llm_scripts(count: int, seed: int, languages: list[str], cfg: dict) -> Iterator[tuple[dict | None, str | None]]:
    """`count` dialogues (languages in turn, topics drawn from the seed): (script, None) or (None, error)."""
    client = ChatClient(cfg["url"], cfg["model"], cfg["api_key"],
                        cfg["timeout_s"], cfg["retries"])
    t_lo, t_hi = cfg["turns"]
    for i in range(count):
        lang = languages[i % len(languages)]
        rng = np.random.default_rng([int(seed), i, 11])
        topics = list(TOPICS["en"])
        topic = topics[int(rng.integers(len(topics)))]
        turns = int(rng.integers(t_lo, t_hi + 1))
        try:
            yield client.dialogue(lang, topic, turns, f"llm-{lang}-{seed}-{i:06d}", int(rng.integers(2**31)),
                                  float(cfg["temperature"])), None
        except LLMError as e:
            yield None, str(e)
