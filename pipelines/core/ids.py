"""Names read back from stored data (shards, catalogs) checked before they name a file.

Example ids are what `contracts.stable_hash` writes (lowercase hex); languages are short codes.
A shard edited by hand or by an attacker could hold `../../x`; nothing read from data becomes a
path component without passing these patterns.
"""

from __future__ import annotations

import re

EXAMPLE_ID_RE = re.compile(r"^[0-9a-f]{8,64}$")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})?$")


def checked_id(eid: object, where: str) -> str:
    """`eid` when it is a tandem example id; ValueError naming `where` otherwise."""
    if not isinstance(eid, str) or not EXAMPLE_ID_RE.match(eid):
        raise ValueError(f"{where}: example id {eid!r:.80} is not a tandem id (lowercase hex); "
                         "refusing to name a file after it")
    return eid


def checked_language(lang: object, where: str) -> str:
    """`lang` when it is a language code such as en or pt-br; ValueError naming `where` otherwise."""
    if not isinstance(lang, str) or not LANGUAGE_RE.match(lang):
        raise ValueError(f"{where}: language {lang!r:.40} is not a language code; refusing to name a folder after it")
    return lang
