"""Small data builders for synthesis tests: fake utterances (no TTS), script files with bad
lines, and a local OpenAI-compatible chat server. Every random draw takes an explicit seed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import numpy as np

from synth.timeline import Turn, Utterance


def fake_utterance(n_words: int, rng: np.random.Generator, sample_rate: int | None = None,
                   word_s: tuple[float, float] = (0.15, 0.45), gap_s: tuple[float, float] = (0.0, 0.08),
                   comma_prob: float = 0.0, comma_s: tuple[float, float] = (0.25, 0.5)) -> Utterance:
    """An utterance of `n_words` words with drawn durations; after a word, with `comma_prob`, a
    phrase pause of `comma_s` (as TTS makes at commas). With `sample_rate`, audio that is a tone
    inside each word and silence between, so tests can check where words are."""
    t, words = 0.0, []
    for i in range(n_words):
        d = float(rng.uniform(*word_s))
        words.append({"word": f"w{i}", "start_s": t, "end_s": t + d})
        gap = float(rng.uniform(*gap_s))
        if rng.random() < comma_prob:
            gap = float(rng.uniform(*comma_s))
        t += d + (gap if i + 1 < n_words else 0.0)
    audio = None
    if sample_rate:
        audio = np.zeros(int(np.ceil(t * sample_rate)), dtype=np.float32)
        f = float(rng.uniform(150, 300))
        for w in words:
            a, b = int(w["start_s"] * sample_rate), int(w["end_s"] * sample_rate)
            audio[a:b] = 0.3 * np.sin(2 * np.pi * f * np.arange(b - a) / sample_rate)
    return Utterance(" ".join(w["word"] for w in words), t, words, audio)


def fake_turns(n_turns: int, seed: int, speakers: tuple[str, ...] = ("A", "B"), sample_rate: int | None = None,
               sentences: tuple[int, int] = (1, 3), words: tuple[int, int] = (3, 12),
               comma_prob: float = 0.0) -> list[Turn]:
    """`n_turns` alternating turns of 1-3 fake sentences each."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_turns):
        spk = speakers[i % len(speakers)]
        chunks = [fake_utterance(int(rng.integers(words[0], words[1] + 1)), rng, sample_rate, comma_prob=comma_prob)
                  for _ in range(int(rng.integers(sentences[0], sentences[1] + 1)))]
        out.append(Turn(spk, chunks))
    return out


def fake_backchannel(sample_rate: int | None = None, word_s: tuple[float, float] = (0.25, 0.4)
                     ) -> Callable[[str, np.random.Generator], Utterance]:
    def bc(listener: str, rng: np.random.Generator) -> Utterance:
        u = fake_utterance(1, rng, sample_rate, word_s=word_s)
        u.words[0]["word"] = "mm-hmm"
        u.text = "mm-hmm"
        return u
    return bc


def tiny_wav2vec2(d: Path, letters: str = "abcdefghijklmnopqrstuvwxyzàâçéèêô'") -> Path:
    """A 40k-parameter random wav2vec2 CTC model with a character vocabulary, saved as a local
    Hugging Face directory (the layout of a real aligner); its alignments are meaningless."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )
    d = Path(d)
    d.mkdir(parents=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate(letters)}}
    (d / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(d / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    Wav2Vec2Processor(feature_extractor=Wav2Vec2FeatureExtractor(sampling_rate=16000), tokenizer=tok).save_pretrained(d)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                                  num_conv_pos_embedding_groups=4, pad_token_id=0)).save_pretrained(d)
    return d


def sample_script(dialogue_id: str = "d1", language: str = "en") -> dict:
    """A short valid script (two speakers, one long turn that can be interrupted)."""
    texts = {
        "en": ["Hello, did you see the news this morning?",
               ("Yes, I read about the new park near the river. They say it opens next spring and everyone "
               "can use it for free."),
               "That sounds lovely. We should go together."],
        "fr": ["Salut, tu as vu les nouvelles ce matin ?",
               "Oui, j'ai lu l'article sur le nouveau parc près de la rivière. Il ouvre au printemps.",
               "C'est super. On devrait y aller ensemble."],
    }
    t = texts.get(language, texts["en"])
    return {"dialogue_id": dialogue_id, "language": language,
            "turns": [{"speaker": "A", "text": t[0]}, {"speaker": "B", "text": t[1]}, {"speaker": "A", "text": t[2]}]}


def write_scripts(path: str | Path, scripts: list[dict], bad_lines: dict[int, str] | None = None) -> Path:
    """Write scripts as JSONL; `bad_lines` {line number: raw text} inserts malformed lines."""
    p = Path(path)
    lines = [json.dumps(s, ensure_ascii=False) for s in scripts]
    for n, raw in sorted((bad_lines or {}).items()):
        lines.insert(n - 1, raw)
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


class ChatServer:
    """A local OpenAI-compatible /v1/chat/completions server that replies from a list (cycling
    on the last); each reply is (status, content). Records the request bodies it got."""

    def __init__(self, replies: list[tuple[int, str]]):
        self.replies = list(replies)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                outer.requests.append({"path": self.path, "body": body})
                i = min(len(outer.requests) - 1, len(outer.replies) - 1)
                status, content = outer.replies[i]
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}) \
                    if status == 200 else content
                raw = data.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
