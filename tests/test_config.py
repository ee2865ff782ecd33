import pytest
import yaml
from pipelines.core.config import config_hash, default_config, default_config_text, load_config


def undocumented_keys(text: str) -> list[tuple[int, str]]:
    """(line, key) of every mapping key, at any depth, with neither a comment line directly above
    nor a comment after it on its line. List items are not keys; a key inside a flow mapping
    (`gain: {prob: 0.5, ...}`) is documented by its line's key."""
    lines = text.splitlines()
    out: list[tuple[int, str]] = []

    def walk(node) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for k, v in node.value:
            ln, line = k.start_mark.line, lines[k.start_mark.line]
            if k.start_mark.column == len(line) - len(line.lstrip()):  # the key opens its line
                above = lines[ln - 1].strip() if ln > 0 else ""
                after = line[v.end_mark.column:] if v.end_mark.line == ln else line[k.end_mark.column:]
                if not above.startswith("#") and not after.lstrip(": \t").startswith("#"):
                    out.append((ln + 1, str(k.value)))
            walk(v)
    walk(yaml.compose(text))
    return out


def test_undocumented_keys_are_found():
    text = ("# a\na:\n  # b\n  b: 1\n  c: {x: 1}  # c\n  d:\n    - e: 1\n  f: [1, 2]\n"
            "  g:\n    h: 2  # h\n  url: http://x/#frag\n")
    assert undocumented_keys(text) == [(6, "d"), (8, "f"), (9, "g"), (11, "url")]  # not e: a list item


def test_defaults_documented_and_loadable():
    from importlib import resources
    cfg = default_config()
    assert cfg["sample_rate"] == 24000 and set(cfg["languages"]) == {"en", "fr", "de", "es", "it", "pt"}
    assert default_config_text()
    # every key of every defaults file says what it is (a comment line above it, or inline)
    files = sorted(f for f in (resources.files("pipelines.core") / "defaults").iterdir() if f.name.endswith(".yaml"))
    assert len(files) >= 5
    bad = [f"pipelines/core/defaults/{f.name}:{ln}: {key}" for f in files for ln, key in undocumented_keys(f.read_text())]
    assert not bad, "keys without a comment:\n" + "\n".join(bad)


def test_user_config_overrides_and_unknown_key(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump({"seed": 7, "shards": {"row_group_rows": 4}}))
    cfg = load_config(p)
    assert cfg["seed"] == 7 and cfg["shards"]["row_group_rows"] == 4
    assert cfg["shards"]["target_bytes"] == default_config()["shards"]["target_bytes"]
    p.write_text(yaml.safe_dump({"shards": {"row_group_rowz": 4}}))
    with pytest.raises(KeyError, match=r"job.yaml.*shards.row_group_rowz"):
        load_config(p)
    p.write_text("seed: [unclosed")
    with pytest.raises(ValueError, match="job.yaml"):
        load_config(p)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_hash_ignores_resources_only():
    a = load_config()
    b = load_config(overrides={"resources": {"num_cpus": 8, "stages": {"transcribe": {"num_gpus": 1}}}})
    c = load_config(overrides={"seed": 1})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)
    assert b["resources"]["stages"]["transcribe"]["num_gpus"] == 1


def test_model_backends_come_from_one_registry_per_kind():
    import dataclasses

    from pipelines.models import asr, diarization
    from pipelines.models.asr_base import AsrParams
    from pipelines.models.cache import ModelsParams
    cfg = load_config(None, {"models": {"cache_dir": "/nowhere"}})
    models = ModelsParams.from_config(cfg)
    assert models.cache_dir == "/nowhere" and models.download is False
    p = AsrParams.from_config(cfg)
    assert set(asr.BACKENDS) == {"faster-whisper", "whisperx"}
    with pytest.raises(ValueError, match="asr.backend 'kaldi': expected one of 'faster-whisper', 'whisperx'"):
        asr.build_asr(dataclasses.replace(p, backend="kaldi"), models)
    # a backend registered under a new name is what build_asr calls: nothing else to edit
    built = []
    asr.BACKENDS["probe"] = (lambda q, m: None, lambda q, m, device, compute, threads, **decoder: built.append((q, m, compute)))
    try:
        asr.build_asr(dataclasses.replace(p, backend="probe"), models)
    finally:
        del asr.BACKENDS["probe"]
    assert built and built[0][1] is models and built[0][2] == p.compute_type
    assert set(diarization.PIPELINES) == {"embedded", "pyannote"}
    with pytest.raises(ValueError, match="diarize.backend 'nemo': expected one of 'embedded', 'pyannote'"):
        dataclasses.replace(_diarize(cfg), backend="nemo")


def _diarize(cfg):
    from pipelines.core.config import typed_section
    from pipelines.models.diarization import DiarizeParams
    return typed_section(DiarizeParams, cfg, "diarize", cache_dir=None)


def test_every_section_goes_through_one_converter():
    from filters.quality import QualityParams
    from pipelines.models.cache import ModelsParams
    from synth.params import SynthSection
    # bool("no") would be True: only YAML's true/false is a bool, in every section
    with pytest.raises(ValueError, match="config models.download: expected true or false, got 'no'"):
        ModelsParams.from_config(load_config(None, {"models": {"download": "no"}}))
    with pytest.raises(ValueError, match="config filters.quality.dnsmos: expected true or false"):
        QualityParams.from_config(load_config(None, {"filters": {"quality": {"dnsmos": "no"}}}))
    with pytest.raises(ValueError, match="config synth.augment.enabled: expected true or false"):
        SynthSection.from_config(load_config(None, {"synth": {"augment": {"enabled": "no"}}}))
    with pytest.raises(ValueError, match=r"config models.cache_dir: expected str \| None, got \['a'\]"):
        ModelsParams.from_config(load_config(None, {"models": {"cache_dir": ["a"]}}))
