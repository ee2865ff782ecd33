"""Turn-taking model: place a dialogue's utterances on one shared timeline, like a conversation.

Speaker changes start after an offset drawn from a normal distribution (default mode +200 ms,
sd 400 ms: about a third of changes overlap, overlaps mostly under 0.5 s; Stivers et al. 2009,
Heldner & Edlund 2010). Pauses inside a turn are drawn longer than gaps between turns. During
the speaker's pauses the listener may backchannel; a speaker change may be an interruption:
the next speaker starts mid-turn and the current one stops at the next word boundary after a
short reaction time, its words truncated to what was said. Every draw comes from the Generator
passed in and is recorded in `Timeline.draws`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from synth.params import TimelineParams


@dataclass(eq=False)
class Utterance:
    """One TTS call: text, duration, word times relative to its start, and its audio (optional)."""

    text: str
    duration_s: float
    words: list[dict]
    audio: np.ndarray | None = None


@dataclass
class Turn:
    speaker: str
    chunks: list[Utterance]  # sentences of the turn, spoken with pauses between them


@dataclass(eq=False)
class Placement:
    speaker: str
    channel: int
    start_s: float
    utt: Utterance
    keep_s: float  # seconds of the utterance kept (shorter than its duration when interrupted)
    kind: str  # "turn" | "backchannel"
    turn: int  # index of the script turn (for a backchannel: the turn it responds to)

    @property
    def end_s(self) -> float:
        return self.start_s + self.keep_s

    def words(self) -> list[dict]:
        """Absolute word times of what was actually said."""
        return [{"word": w["word"], "start_s": self.start_s + w["start_s"], "end_s": self.start_s + w["end_s"],
                 "speaker": self.speaker, "channel": self.channel, "score": float(w.get("score", 1.0))}
                for w in self.utt.words if w["end_s"] <= self.keep_s + 1e-9]


@dataclass
class Timeline:
    placements: list[Placement]
    duration_s: float
    changes: list[dict] = field(default_factory=list)  # per speaker change: offset_s, interruption
    draws: dict = field(default_factory=dict)

    def words(self) -> list[dict]:
        out = [w for p in self.placements for w in p.words()]
        return sorted(out, key=lambda w: (w["start_s"], w["channel"]))

    def stats(self) -> dict:
        """Per-dialogue turn-taking figures, recorded in the example's params."""
        turns = sum(1 for p in self.placements if p.kind == "turn")
        bcs = sum(1 for p in self.placements if p.kind == "backchannel")
        return {
            "offsets_s": [round(c["offset_s"], 4) for c in self.changes],
            "interrupted": [bool(c["interruption"]) for c in self.changes],
            "speaker_changes": len(self.changes),
            "interruptions": sum(1 for c in self.changes if c["interruption"]),
            "utterances": turns,
            "backchannels": bcs,
            "turns": len({p.turn for p in self.placements if p.kind == "turn"}),
        }


def draw_offset(rng: np.random.Generator, c: TimelineParams) -> float:
    return float(np.clip(rng.normal(c.gap_mean_s, c.gap_std_s), c.gap_min_s, c.gap_max_s))


def draw_pause(rng: np.random.Generator, c: TimelineParams) -> float:
    x = c.pause_median_s * float(np.exp(rng.normal(0.0, c.pause_sigma)))
    return float(np.clip(x, c.pause_min_s, c.pause_max_s))


def build_timeline(turns: list[Turn], channels: dict[str, int], rng: np.random.Generator,
                   backchannel: Callable[[str, np.random.Generator], Utterance] | None,
                   c: TimelineParams) -> Timeline:
    """Place `turns` (script order) on a two-channel timeline.

    `channels` maps speaker -> channel; `backchannel(listener, rng)` returns a short utterance
    in the listener's voice (None disables backchannels); `c` is the `synth.timeline` section.
    """
    draws: dict = {"lead_in_s": float(rng.uniform(*c.lead_in_s)), "changes": [], "pauses": [],
                   "backchannels": []}
    placed: list[Placement] = []
    changes: list[dict] = []
    speakers = list(channels)
    prev: list[Placement] = []  # the previous turn's placements
    prev_speaker: str | None = None
    for ti, turn in enumerate(turns):
        if not turn.chunks:
            continue
        if not prev:
            start = draws["lead_in_s"]
        elif turn.speaker == prev_speaker:
            pause = draw_pause(rng, c)
            draws["pauses"].append(round(pause, 4))
            start = prev[-1].end_s + pause
        else:
            start, change = _speaker_change(prev, placed, rng, c)
            changes.append(change)
            draws["changes"].append(change)
        # the next speaker does not backchannel over its own turn
        placed = [p for p in placed if not (p.kind == "backchannel" and p.speaker == turn.speaker
                                            and p.end_s > start)]
        listener = _listener(turn.speaker, prev_speaker, speakers, rng)
        cur: list[Placement] = []
        t = start
        bc_free = start  # the listener's channel is free of its own backchannels from here
        for j, utt in enumerate(turn.chunks):
            p = Placement(turn.speaker, channels[turn.speaker], t, utt, utt.duration_s, "turn", ti)
            cur.append(p)
            placed.append(p)
            t = p.end_s

            can_bc = backchannel is not None and listener is not None
            # listeners also backchannel over the speaker's words (most overlap in real talk is this)
            if can_bc and len(utt.words) >= 3 and rng.random() < c.backchannel_overlap_prob:
                lo, hi = c.backchannel_at
                k = int(rng.integers(int(lo * len(utt.words)), max(int(lo * len(utt.words)) + 1,
                                                                   int(hi * len(utt.words)))))
                at = p.start_s + float(utt.words[min(k, len(utt.words) - 1)]["start_s"])
                if at >= bc_free:
                    bc_free = _add_bc(placed, draws, backchannel, listener, channels[listener], at, ti, "speech", rng)
            if j + 1 < len(turn.chunks):
                pause = draw_pause(rng, c)
                draws["pauses"].append(round(pause, 4))
                if can_bc and rng.random() < c.backchannel_prob:
                    at = t + float(rng.uniform(*c.backchannel_delay_s))
                    if at >= bc_free:
                        bc_free = _add_bc(placed, draws, backchannel, listener, channels[listener], at, ti, "pause",
                                          rng)
                t += pause
        prev, prev_speaker = cur, turn.speaker
    end = max((p.end_s for p in placed), default=0.0) + float(c.tail_s)
    return Timeline(placed, end, changes, draws)


def _add_bc(placed: list[Placement], draws: dict, backchannel: Callable, listener: str, channel: int, at: float,
            turn: int, where: str, rng: np.random.Generator) -> float:
    """Place a backchannel of `listener` at `at`; returns when it ends."""
    bc = backchannel(listener, rng)
    placed.append(Placement(listener, channel, at, bc, bc.duration_s, "backchannel", turn))
    draws["backchannels"].append({"turn": turn, "listener": listener, "text": bc.text, "start_s": round(at, 4),
                                  "where": where})
    return at + bc.duration_s


def _listener(speaker: str, prev_speaker: str | None, speakers: list[str],
              rng: np.random.Generator) -> str | None:
    if prev_speaker is not None and prev_speaker != speaker:
        return prev_speaker
    others = [s for s in speakers if s != speaker]
    return others[int(rng.integers(len(others)))] if others else None


def _speaker_change(prev: list[Placement], placed: list[Placement], rng: np.random.Generator,
                    c: TimelineParams) -> tuple[float, dict]:
    """Start of the next turn after `prev`; truncates `prev` in place when it is interrupted."""
    last = prev[-1]
    if rng.random() < c.interruption_prob:
        words = [(p, w) for p in prev for w in p.utt.words]
        if len(words) >= c.interruption_min_words:
            lo, hi = c.interruption_at
            k = int(rng.integers(max(1, int(lo * len(words))), max(2, int(hi * len(words)))))
            k = min(k, len(words) - 1)
            p, w = words[k]
            t_int = p.start_s + w["start_s"] + float(rng.uniform(0.0, max(w["end_s"] - w["start_s"], 1e-3)))
            reaction = float(rng.uniform(*c.interruption_reaction_s))
            # the interrupted speaker stops at the first word end after its reaction time
            cut_i = next((i for i, (q, v) in enumerate(words) if q.start_s + v["end_s"] >= t_int + reaction), None)
            if cut_i is not None and cut_i < len(words) - 1:
                q, v = words[cut_i]
                q.keep_s = v["end_s"]
                qi = prev.index(q)
                dropped = {id(r) for r in prev[qi + 1:]}
                placed[:] = [x for x in placed if id(x) not in dropped]
                del prev[qi + 1:]
                cut = q.end_s
                # the listener stopped backchannelling once it took the floor
                placed[:] = [b for b in placed if not (b.kind == "backchannel" and b.turn == q.turn
                                                       and b.start_s >= cut)]
                return t_int, {"offset_s": t_int - cut, "interruption": True, "at_word": k,
                               "words_said": cut_i + 1, "words_total": len(words),
                               "reaction_s": round(reaction, 4), "cut_s": cut}
    off = draw_offset(rng, c)
    drawn = off
    off = max(off, -c.max_overlap_frac * last.keep_s)
    return last.end_s + off, {"offset_s": off, "interruption": False, "drawn_s": round(drawn, 4)}
