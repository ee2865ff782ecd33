"""Pocket TTS backend: the package's own loading, voice-cloning and streaming code on a model built
from its shipped french.yaml with random weights, a character tokenizer and a tiny wav2vec2 CTC
aligner for the word times (no weights can be downloaded here)."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from pipelines.models.registry import ModelMissing
from synth.tts.base import TTSError, WordTimer
from synth.tts.pocket import PocketTTS, check_pocket

from tandem.testing.synth import tiny_wav2vec2

TEXT = "Bonjour, on se voit demain."
CHARS = list("abcdefghijklmnopqrstuvwxyzàâçéèêëîïôùûüœ' ,.?!-")


def _tokenizer(path: Path) -> int:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    vocab = {"<unk>": 0, **{c: i + 1 for i, c in enumerate(dict.fromkeys(CHARS + [c.upper() for c in CHARS]))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.save(str(path))
    return len(vocab)


def _config(tmp: Path, **weights) -> Path:
    from pocket_tts.utils.config import CONFIGS_DIR
    conf = yaml.safe_load((CONFIGS_DIR / "french.yaml").read_text())
    conf["weights_path"] = conf["weights_path_without_voice_cloning"] = None
    n = _tokenizer(tmp / "tokenizer.json")
    conf["flow_lm"]["lookup_table"].update(tokenizer_path=str(tmp / "tokenizer.json"), n_bins=n)
    conf.update(weights)
    p = tmp / f"fr-{len(list(tmp.glob('fr-*.yaml')))}.yaml"
    p.write_text(yaml.safe_dump(conf))
    return p


def _clip(path: Path, f0: float, seed: int) -> str:
    sr = 24000
    t = np.arange(int(1.5 * sr)) / sr
    g = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.02 * g.standard_normal(t.size)
    sf.write(path, x.astype(np.float32), sr)
    return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pocket")
    return {"config": _config(tmp), "aligner": tiny_wav2vec2(tmp / "w2v"), "tmp": tmp,
            "clips": [_clip(tmp / "a.wav", 120, 1), _clip(tmp / "b.wav", 230, 2)]}


@pytest.fixture(scope="module")
def tts(env):
    return PocketTTS(24000, models={"fr": str(env["config"])}, timer=WordTimer(str(env["aligner"])),
                     max_tokens=50, allow_random=True)


def test_synthesis_through_the_package(tts, env):
    from pocket_tts import TTSModel
    assert isinstance(tts.models["fr"], TTSModel) and tts.models["fr"].sample_rate == 24000
    audio, sr, words = tts.synthesize(TEXT, "fr", voice=env["clips"][0])
    assert sr == 24000 and audio.dtype == np.float32 and audio.ndim == 1
    # Mimi decodes 1920 samples per 12.5 Hz frame
    assert len(audio) > 0 and len(audio) % 1920 == 0 and np.isfinite(audio).all()
    # word times by forced alignment of the script: every word, in order, inside the audio
    assert tts.word_times == "forced-alignment"
    assert [w["word"] for w in words] == TEXT.split()
    dur = len(audio) / sr
    for a, b in itertools.pairwise(words):
        assert a["start_s"] <= b["start_s"]
    for w in words:
        assert 0 <= w["start_s"] <= w["end_s"] <= dur + 1e-6 and 0.0 <= w["score"] <= 1.0


def test_streaming_deterministic_and_cloned(tts, env):
    a, _, _ = tts.synthesize(TEXT, "fr", voice=env["clips"][0])
    chunks = list(tts.stream(TEXT, "fr", env["clips"][0]))
    assert len(chunks) >= 1
    # same seed, same audio, streamed or not; CPU float kernels may round the last bit differently
    # from run to run (seen: 1.2e-7 on a loaded machine), far under one 16-bit step of the FLAC (3e-5)
    np.testing.assert_allclose(np.concatenate(chunks), a, rtol=0, atol=2e-6)
    b, _, _ = tts.synthesize(TEXT, "fr", voice=env["clips"][1])
    assert not np.array_equal(a[: min(len(a), len(b))], b[: min(len(a), len(b))])  # another voice prompt
    assert len(tts._states) == 2  # one prompt state per clip, computed once


def test_bad_requests_are_clear(tts, env):
    with pytest.raises(TTSError, match="no model for language 'de'"):
        tts.synthesize(TEXT, "de", voice=env["clips"][0])
    with pytest.raises(TTSError, match="reference clip .*missing.wav not found"):
        tts.synthesize(TEXT, "fr", voice=str(env["tmp"] / "missing.wav"))
    with pytest.raises(TTSError, match="voice"):
        tts.synthesize(TEXT, "fr")


def test_missing_weight_file_is_a_clear_error(env):
    tmp = env["tmp"]
    missing = tmp / "nowhere" / "model.safetensors"
    cfg = _config(tmp, weights_path=str(missing))
    with pytest.raises(ModelMissing, match=r"weights_path for 'fr' is missing: .*nowhere/model.safetensors"):
        PocketTTS(24000, models={"fr": str(cfg)}, allow_random=True)
    # a config without any weights is refused in production (random weights only when asked)
    with pytest.raises(ModelMissing, match="names no weights"):
        check_pocket({"fr": str(env["config"])}, ["fr"])
    with pytest.raises(ModelMissing, match="no model for 'it'"):
        check_pocket({"fr": str(env["config"])}, ["fr", "it"], allow_random=True)
    # a packaged config's hub weights are not in this machine's cache
    with pytest.raises(ModelMissing, match="hf://kyutai"):
        check_pocket({"fr": "french"}, ["fr"])


def test_dialogue_through_the_synthesis_stage(tts, env, tmp_path):
    # the stage with the pocket backend: speakers cast from a directory of reference clips (one
    # clip each, distinct), word times from the aligner, recorded as such
    import json

    from pipelines.core.config import config_hash, load_config
    from synth.job import make_items
    from synth.stages import SynthesizeStage
    bank = tmp_path / "fr"
    bank.mkdir()
    for c in env["clips"]:
        (bank / Path(c).name).write_bytes(Path(c).read_bytes())
    cfg = load_config(overrides={
        "languages": ["fr"],
        "synth": {"tts": {"backend": "pocket", "align_model": str(env["aligner"]),
                          "pocket": {"models": {"fr": str(env["config"])}}},
                  "voices": {"bank": {"fr": str(bank)}}, "augment": {"enabled": False},
                  "builtin": {"turns": [2, 2], "sentences_per_turn": [1, 1], "three_speakers_prob": 0.0},
                  "timeline": {"backchannel_prob": 0.0, "backchannel_overlap_prob": 0.0}}})
    st = SynthesizeStage.from_config(cfg)
    with pytest.raises(ModelMissing, match="names no weights"):
        st.check()  # production refuses random weights
    st.tts, st._ready = tts, True  # the random-weight model built above stands in for real weights
    it = st(next(make_items(None, 1, 0, ["fr"], cfg, config_hash(cfg), str(tmp_path))))
    assert it["status"] == "ok", it["rejections"]
    ex = it["examples"][0]
    p = json.loads(ex["params"])
    assert p["tts"] == "pocket" and p["word_times"] == "forced-alignment" and p["distinct_voices"]
    assert {v["name"] for v in p["voices"].values()} == {str(bank / Path(c).name) for c in env["clips"]}
    assert ex["sample_rate"] == 24000 and {w["channel"] for w in ex["words"]} == {0, 1}
    assert all(0.0 <= w["score"] < 1.0 for w in ex["words"])
