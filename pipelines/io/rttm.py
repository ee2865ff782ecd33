"""RTTM: the one reader and writer of speaker turns as NIST RTTM lines."""

from __future__ import annotations

from pathlib import Path

from pipelines.io.files import write_atomic


def write_rttm(path: str | Path, uri: str, turns: list[dict]) -> Path:
    return write_atomic(path, "".join(f"SPEAKER {uri} 1 {t['start_s']:.3f} {t['end_s'] - t['start_s']:.3f} "
                                      f"<NA> <NA> {t['speaker']} <NA> <NA>\n" for t in turns))


def read_rttm(path: str | Path) -> list[dict]:
    """Turns {start_s, end_s, speaker} of an RTTM file, in file order."""
    out = []
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            out.append({"start_s": start, "end_s": start + dur, "speaker": f[7]})
    return out
