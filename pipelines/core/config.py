"""Job configuration: documented defaults in pipelines/core/defaults/*.yaml, one file per top-level section.

A user config (YAML) overrides any subset; an unknown key is an error. The hash covers everything
that changes the data, not the `resources` and `shards` sections (moving a job to a GPU cluster keeps its ids).
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources as ires
from pathlib import Path
from typing import Any

import yaml

from pipelines.core.contracts import stable_hash

# `shards` only changes how rows are grouped into files, never their content.
NOT_HASHED = ("resources", "shards")


def _defaults_dir():
    return ires.files("pipelines.core") / "defaults"


def default_config() -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for f in sorted(_defaults_dir().iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            data = yaml.safe_load(f.read_text()) or {}
            for k in data:
                if k in cfg:
                    raise ValueError(f"config section {k!r} defined twice (in {f.name})")
            cfg.update(data)
    return cfg


@functools.lru_cache(maxsize=1)
def _cached_defaults() -> dict[str, Any]:
    return default_config()


def section(cfg: dict, name: str) -> dict[str, Any]:
    """One top-level section with its documented defaults under whatever `cfg` sets.

    Stages read their knobs through this, so a partial config (a test's, a library user's)
    gets the same defaults as a full one, from the YAML files alone.
    """
    out = copy.deepcopy(_cached_defaults()[name])
    out.update(cfg.get(name) or {})
    return out


def setting(cfg: dict, name: str) -> Any:
    """One top-level scalar (`seed`, ...): `cfg`'s value, else its documented default; KeyError
    for a name the defaults do not know (a typo is an error, not a silent default)."""
    if name in cfg:
        return cfg[name]
    return copy.deepcopy(_cached_defaults()[name])


def typed_section(cls: type, cfg: dict, name: str, **extra: Any):
    """Dataclass `cls` filled from section `name` (YAML defaults applied) plus `extra` fields.

    Keys of the section the class does not declare are other readers'; a field the section lacks,
    a null the type does not allow, or a value of the wrong type is an error naming the key
    (pipelines/core/typed.py), never a silent default.
    """
    from pipelines.core.typed import from_dict
    return from_dict(cls, section(cfg, name), name, unknown="ignore", **extra)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set a.b=VALUE` pairs (VALUE is YAML) to a nested override dict."""
    over: dict[str, Any] = {}
    for kv in pairs:
        if "=" not in kv:
            raise ValueError(f"--set {kv!r}: expected KEY=VALUE")
        key, val = kv.split("=", 1)
        parts = key.split(".")
        if not all(parts):
            raise ValueError(f"--set {kv!r}: the key must be dotted names such as asr.beam_size")
        try:
            value = yaml.safe_load(val)
        except yaml.YAMLError as e:  # a tag such as !!python/object is refused by safe_load: one line, no trace
            why = " ".join(str(getattr(e, "problem", None) or e).split())
            raise ValueError(f"--set {kv!r}: the value is not plain YAML ({why})") from None
        d = over
        for part in parts[:-1]:
            d = d.setdefault(part, {})
            if not isinstance(d, dict):
                raise ValueError(f"--set {kv!r}: {part} was set to a value above, not a section")  # noqa: TRY004 - a usage error
        d[parts[-1]] = value
    return over


def default_config_text() -> str:
    """The defaults with their comments: what `tandem config show --defaults` prints."""
    parts = []
    for f in sorted(_defaults_dir().iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            parts.append(f"# ---- {f.name} ----\n{f.read_text().rstrip()}\n")
    return "\n".join(parts)


# maps whose keys are the user's (stage names), whatever their defaults hold
OPEN_MAPS = ("resources.stages",)


def _merge(base: dict, over: dict, path: str, free: bool = False) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        where = f"{path}.{k}" if path else k
        if k not in out and not free:
            raise KeyError(f"unknown config key {where!r}")
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            # dicts whose defaults are empty are open maps (e.g. per-stage resources)
            out[k] = _merge(out[k], v, where, free=free or not out[k] or where in OPEN_MAPS)
        else:
            out[k] = v
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """Defaults, then the YAML file at `path`, then `overrides`; raises naming the file on bad input."""
    cfg = default_config()
    if path is not None:
        p = Path(path)
        try:
            user = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"config file {p}: not found") from None
        except yaml.YAMLError as e:
            raise ValueError(f"config file {p}: not valid YAML: {' '.join(str(e).split())}") from None  # one line
        if not isinstance(user, dict):
            raise ValueError(f"config file {p}: top level must be a mapping")
        try:
            cfg = _merge(cfg, user, "")
        except KeyError as e:
            raise KeyError(f"config file {p}: {e.args[0]}") from None
    if overrides:
        cfg = _merge(cfg, overrides, "")
    return cfg


def config_hash(cfg: dict[str, Any]) -> str:
    return stable_hash({k: v for k, v in cfg.items() if k not in NOT_HASHED})


def config_json(cfg: dict[str, Any]) -> str:
    return json.dumps(cfg, sort_keys=True)
