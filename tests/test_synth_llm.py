"""LLM script source against a local OpenAI-compatible server started by the test."""

import json

import pytest
from tandem.pipelines.core.config import config_hash, load_config
from tandem.synth.job import make_items
from tandem.synth.llm import ChatClient, LLMError, parse_dialogue

from tandem.testing.synth import ChatServer

GOOD = json.dumps({"turns": [{"speaker": "A", "text": "Salut, ça va ?"},
                             {"speaker": "B", "text": "Oui, très bien, merci."}]})


def test_client_parses_fenced_reply_and_sends_request():
    reply = f"Voici le dialogue :\n```json\n{GOOD}\n```\nBonne journée !"
    with ChatServer([(200, reply)]) as srv:
        s = ChatClient(srv.url, model="m1", retries=1).dialogue("fr", "travel", 6, "d0", seed=7)
    assert s["language"] == "fr" and s["dialogue_id"] == "d0" and len(s["turns"]) == 2
    req = srv.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "m1"
    assert req["body"]["seed"] == 7 and "French" in req["body"]["messages"][1]["content"]


def test_client_retries_http_errors_and_bad_replies():
    with ChatServer([(500, "overloaded"), (200, "no json here"), (200, GOOD)]) as srv:
        s = ChatClient(srv.url, retries=3, backoff_s=0.0).dialogue("fr", "work", 6, "d1", seed=1)
    assert len(srv.requests) == 3 and s["turns"][1]["speaker"] == "B"


def test_client_gives_up_with_the_reason():
    one_speaker = json.dumps({"turns": [{"speaker": "A", "text": "hi"}, {"speaker": "A", "text": "yo"}]})
    with ChatServer([(200, one_speaker)]) as srv, pytest.raises(LLMError, match="at least two speakers"):
        ChatClient(srv.url, retries=2, backoff_s=0.0).dialogue("en", "work", 6, "d2", seed=1)
    assert len(srv.requests) == 2


def test_parse_dialogue_bare_json_after_prose():
    assert len(parse_dialogue(f"Sure! {GOOD} Hope it helps.")["turns"]) == 2
    with pytest.raises(LLMError):
        parse_dialogue('{"text": "no turns"}')


def test_make_items_from_llm_keeps_failures_as_rejections():
    with ChatServer([(200, GOOD), (200, "nothing"), (200, "nothing"), (200, "nothing")]) as srv:
        cfg = load_config(overrides={"synth": {"llm": {"url": srv.url, "retries": 3}}})
        items = list(make_items("llm", 2, 0, ["fr"], cfg, config_hash(cfg), "/unused"))
    assert [i["status"] for i in items] == ["ok", "rejected"]
    assert items[0]["script"]["turns"][0]["text"] == "Salut, ça va ?"
    assert "no usable dialogue after 3 attempts" in items[1]["rejections"][0]["detail"]
