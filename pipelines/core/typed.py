"""Config mappings to typed parameter dataclasses: the one converter every section goes through.

`from_dict(cls, d, where)` fills a dataclass from one config (sub-)section: each field converted to
its annotation (scalars, `X | None`, [low, high] ranges, `tuple[X, ...]`, `dict[str, X]`, plain
`list`/`dict`, nested parameter dataclasses); a field the mapping lacks, a null where the type
allows none, a value of the wrong shape or (unless `unknown="ignore"`) a key the class does not
know is an error naming the key's full path, never a silent default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

_SCALARS = (int, float, str, bool)


def _fits(a: Any, v: Any) -> bool:
    """Union member `a` matches the shape of value `v`."""
    o = typing.get_origin(a)
    if a is dict or o is dict:
        return isinstance(v, dict)
    if a in (list, tuple) or o in (list, tuple):
        return isinstance(v, (list, tuple))
    return a in _SCALARS and not isinstance(v, (dict, list, tuple))


def convert(t: Any, v: Any, where: str) -> Any:
    """`v` as annotated type `t` (`where`: the key's path, for messages)."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        if v is None:
            if type(None) in args:
                return None
            raise ValueError(f"config {where}: must be set (got null)")
        for a in args:
            if _fits(a, v):
                return convert(a, v, where)
        raise ValueError(f"config {where}: expected {t}, got {v!r}")
    if v is None:
        raise ValueError(f"config {where}: must be set (got null)")
    if t is Any:
        return v
    if dataclasses.is_dataclass(t):
        if not isinstance(v, dict):
            raise ValueError(f"config {where}: expected a mapping, got {v!r}")
        return from_dict(t, v, where)
    if t is bool:  # bool("false") is True: only YAML's true/false
        if not isinstance(v, bool):
            raise ValueError(f"config {where}: expected true or false, got {v!r}")
        return v
    if t in _SCALARS:
        if isinstance(v, (dict, list, tuple)):
            raise ValueError(f"config {where}: expected {t.__name__}, got {v!r}")
        return t(v)
    if t in (list, dict):
        if not isinstance(v, t if t is dict else (list, tuple)):
            raise ValueError(f"config {where}: expected a {'mapping' if t is dict else 'list'}, got {v!r}")
        return list(v) if t is list else v
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"config {where}: expected a list, got {v!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(args[0], x, f"{where}[{i}]") for i, x in enumerate(v))
        out = tuple(convert(a, x, where) for a, x in zip(args, v))
        if len(v) != 2 or out[0] > out[1]:
            raise ValueError(f"config {where}: expected a [low, high] range, got {v}")
        return out
    if origin is dict:
        if not isinstance(v, dict):
            raise ValueError(f"config {where}: expected a mapping, got {v!r}")
        return {str(k): convert(args[1], x, f"{where}.{k}") for k, x in v.items()}
    raise TypeError(f"{where}: no conversion for field type {t}")  # a parameter class's bug


def from_dict(cls: type, d: dict, where: str, *, unknown: str = "error", **given: Any):
    """Dataclass `cls` from mapping `d` (the config section named `where` in messages).

    `given`: fields set by the caller (not read from `d`, not converted). A class with a
    `validate_raw(d)` classmethod checks the raw mapping first (its own messages).
    """
    check = getattr(cls, "validate_raw", None)
    if check is not None:
        check(d)
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = {f.name for f in fields}
    if unknown == "error":
        extra = sorted(set(d) - names)
        if extra:
            raise KeyError(f"config {where}: unknown key(s) {extra} (known: {sorted(names)})")
    kw = {}
    for f in fields:
        if f.name in given:
            kw[f.name] = given[f.name]
        elif f.name not in d:
            raise KeyError(f"config {where}.{f.name}: missing (no default in pipelines/core/defaults)")
        else:
            kw[f.name] = convert(hints[f.name], d[f.name], f"{where}.{f.name}")
    return cls(**kw)
