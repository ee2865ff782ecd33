"""The work item between stages: every key a stage may read or write, with its type.

An item is a plain dict (it pickles to Ray Data blocks and back), but its keys are declared here:
a stage naming an undeclared key in `reads`/`writes` fails when its class is defined, and after
each `process` the keys a stage declares in `writes` must be there with their declared type (a
stage that forgets one is a bug: the item is retried, never committed as the data's fault).
"""

from __future__ import annotations

import numbers

import numpy as np

_SEQ = (list, tuple, np.ndarray)
_INT = (numbers.Integral,)
_REAL = (numbers.Real,)

FIELDS: dict[str, tuple[type, ...]] = {
    # the job: every item
    "uri": (str,),                 # the input (an absolute path, or builtin:/llm: for synthesis)
    "uri_given": (str,),           # the input as the user named it
    "kind": (str,),                # real | synthetic
    "work_key": (str,),            # what a commit records as done (resume skips it)
    "seed": _INT,                  # this item's seed, from the job seed and the uri
    "status": (str,),              # ok | rejected | retry
    "rejections": _SEQ,            # contracts.rejection_row dicts
    "out_dir": (str,),
    "cfg_hash": (str,),
    "timings": (dict,),            # stage -> {seconds, audio_s}
    "retry": (dict,),              # why a stage failed (not the data's fault)
    # curation: ingest
    "source_id": (str,),
    "work_path": (str,),           # OUT/_work/<source_id>.wav, removed when the item is written
    "sample_rate": _INT,
    "channels": _INT,
    "duration_s": _REAL,
    "format": (str,),
    "orig_sample_rate": _INT,
    "orig_channels": _INT,
    "bytes": _INT,
    "two_channel": (bool,),        # a real two-party recording, one party per channel
    # curation: vad, diarize, transcribe
    "speech": _SEQ,                # [(start_s, end_s)] of the mixture
    "speech_ch": _SEQ,             # per channel for two-channel inputs; None otherwise
    "turns": _SEQ,                 # [{start_s, end_s, speaker}]
    "segments": _SEQ,              # ASR segments with words
    # every job: what the writer commits
    "examples": _SEQ,              # contracts.example_row dicts
    "rejected_examples": _SEQ,
    "source": (dict,),             # the sources/ row
    # synthesis
    "script": (dict,),
    "llm_request": (dict,),
}


class ItemContractError(TypeError):
    """A stage read or wrote a key the item does not declare, or wrote the wrong type: a bug."""


def declare(**fields: tuple[type, ...]) -> None:
    """Keys a job of its own adds (a Stage subclass's `item_fields`); a key's type cannot change."""
    for k, t in fields.items():
        if FIELDS.get(k, t) != t:
            raise ItemContractError(f"item key {k!r} is declared already as {FIELDS[k]}")
        FIELDS[k] = t


def check_declared(stage: str, keys: tuple[str, ...]) -> None:
    unknown = [k for k in keys if k not in FIELDS]
    if unknown:
        raise ItemContractError(f"stage {stage}: item keys {unknown} are not declared in pipelines/core/item.py")


def check_writes(stage: str, writes: tuple[str, ...], item: dict) -> None:
    """After `process` on an item still `ok`: each written key present, of its declared type."""
    for k in writes:
        if k not in item:
            raise ItemContractError(f"stage {stage}: declares it writes {k!r} but the item has none")
        v = item[k]
        if k not in FIELDS:
            raise ItemContractError(f"stage {stage}: writes {k!r}, which no module declares")
        if v is not None and not isinstance(v, FIELDS[k]):
            raise ItemContractError(f"stage {stage}: wrote {k!r} as {type(v).__name__}, "
                                    f"declared {' | '.join(t.__name__ for t in FIELDS[k])}")
