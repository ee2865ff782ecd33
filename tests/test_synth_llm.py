"""LLM script source against a local OpenAI-compatible server started by the test."""

import json

import pytest
from pipelines.core.config import config_hash, load_config
from synth.job import make_items
from synth.llm import ChatClient, LLMError, parse_dialogue

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


def _llm_cfg(url, **kw):
    return load_config(overrides={"synth": {"llm": {"url": url, "retries": 3, **kw}, "augment": {"enabled": False},
                                            "roundtrip": {"enabled": False}}})


def test_scripts_are_requested_by_the_workers_and_cached(tmp_path):
    from synth.stages import SynthesizeStage
    out = tmp_path / "out"
    with ChatServer([(200, GOOD)]) as srv:
        cfg = _llm_cfg(srv.url)
        items = list(make_items("llm", 3, 0, ["fr"], cfg, config_hash(cfg), str(out)))
        assert srv.requests == []  # the driver only plans the dialogues
        assert len({i["work_key"] for i in items}) == 3 and all("script" not in i for i in items)
        st = SynthesizeStage.from_config(cfg)
        done = [st(dict(i)) for i in items]
        assert [i["status"] for i in done] == ["ok"] * 3 and len(srv.requests) == 3
        assert done[0]["script"]["turns"][0]["text"] == "Salut, ça va ?"
        assert len(list((out / "_llm_cache").glob("*.json"))) == 3
        # a rerun resumes from the cache: same scripts and audio, no request sent
        again = [st(dict(i)) for i in make_items("llm", 3, 0, ["fr"], cfg, config_hash(cfg), str(out))]
        assert len(srv.requests) == 3
        assert [d["examples"][0]["audio"] for d in again] == [d["examples"][0]["audio"] for d in done]
        # the cache key holds the model: another model asks again
        cfg2 = _llm_cfg(srv.url, model="other")
        st2 = SynthesizeStage.from_config(cfg2)
        st2(next(make_items("llm", 1, 0, ["fr"], cfg2, config_hash(cfg2), str(out))))
        assert len(srv.requests) == 4 and srv.requests[-1]["body"]["model"] == "other"


def test_unusable_replies_reject_and_an_unreachable_server_is_retried(tmp_path):
    from synth.stages import SynthesizeStage
    with ChatServer([(200, "nothing")]) as srv:
        cfg = _llm_cfg(srv.url)
        it = SynthesizeStage.from_config(cfg)(next(make_items("llm", 1, 0, ["fr"], cfg, config_hash(cfg),
                                                              str(tmp_path))))
    assert it["status"] == "rejected" and it["source"]["status"] == "rejected"
    assert "no usable dialogue after 3 attempts" in it["rejections"][0]["detail"]
    assert it["rejections"][0]["reason"] == "bad_script"
    with ChatServer([(503, "overloaded")]) as srv:
        cfg = _llm_cfg(srv.url)
        it = SynthesizeStage.from_config(cfg)(next(make_items("llm", 1, 0, ["fr"], cfg, config_hash(cfg),
                                                              str(tmp_path))))
    # not the data's fault: left for a rerun, never recorded as a rejection
    assert it["status"] == "retry" and not it["rejections"] and "LLMUnavailable" in it["retry"]["reason"]
