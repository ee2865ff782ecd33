"""The one text normalizer and the error rates built on it (round-trip CER, trust features, dedup
shingles, evaluation WER all compare text the same way)."""

from __future__ import annotations

import re
import unicodedata

_NON_WORD = re.compile(r"[^\w\s]|_")


def norm_text(text: str | None, strip_accents: bool = False) -> str:
    """NFKC, lowercase, punctuation (apostrophes and hyphens included) to spaces, single spaces.

    Apostrophes become spaces so that ' and ’ (or "aujourd'hui" and "aujourd hui") compare equal.
    `strip_accents` also drops diacritics, for references written without them.
    """
    t = unicodedata.normalize("NFKC", text or "").lower()
    if strip_accents:
        t = "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", t).split())


def cer(ref: str, hyp: str, strip_accents: bool = False) -> float:
    """Character error rate after `norm_text`: 0 for two empty texts, 1 for an empty side."""
    import jiwer
    r, h = norm_text(ref, strip_accents), norm_text(hyp, strip_accents)
    if not r:
        return 0.0 if not h else 1.0
    if not h:
        return 1.0
    return float(jiwer.cer(r, h))


def wer_counts(ref: str, hyp: str, strip_accents: bool = False) -> tuple[int, int]:
    """(word errors, reference words) after `norm_text`, so rates can be pooled over files."""
    import jiwer
    r, h = norm_text(ref, strip_accents), norm_text(hyp, strip_accents)
    n = len(r.split())
    if not r:
        return len(h.split()), 0
    if not h:
        return n, n
    o = jiwer.process_words(r, h)
    return o.substitutions + o.deletions + o.insertions, n
