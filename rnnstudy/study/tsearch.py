"""Bracketing the memory transition in T: start, multiply while at least half the seeds solve, refine in log T.

The search is a pure function of the verdicts so far (:func:`next_T`), so every worker, a rerun after
a kill, and one worker or several all visit the same points in the same order; the verdict of a
point is read back from its finished study, never remembered by a process.
"""

from __future__ import annotations

import math

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from rnnstudy.run.config import Strict


class TSearch(Strict):
    """Where to look for the transition: ``start``, x ``factor`` while solved, up to ``max``; ``refine`` bisections in log T."""

    start: PositiveInt
    """The first T tried."""
    factor: float = Field(default=2.0, gt=1.0)
    """T is multiplied by this while at least half the seeds solve."""
    max: PositiveInt
    """The largest T tried: solved there means memory length > max."""
    refine: int = Field(default=2, ge=0)
    """Bisections in log T between the last T solved and the first T failed."""
    bracket_seeds: list[NonNegativeInt] = []
    """More seeds, run once the search is done at the two T that bracket the crossing (:func:`bracket`): they
    sharpen T50's interval where the seeds disagree; the search's verdicts read its own seeds only."""

    @model_validator(mode="after")
    def _ordered(self) -> TSearch:
        if self.max < self.start:
            raise ValueError(f"max = {self.max} is below start = {self.start}; allowed: max >= start")
        return self

    def ladder(self) -> list[int]:
        """The T of the multiplying phase, in order: start, start x factor, ..., max."""
        out = [self.start]
        while out[-1] < self.max:
            out.append(min(self.max, max(out[-1] + 1, round(out[-1] * self.factor))))
        return out


def next_T(search: TSearch, verdicts: dict[int, bool]) -> int | None:
    """The next T to visit given the verdicts so far (True: at least half the seeds solved), or None when the search is done."""
    return _walk(search, verdicts)[0]


def bracket(search: TSearch, verdicts: dict[int, bool]) -> list[int]:
    """The two T that bracket the crossing once the search is done (the last T solved and the first T failed, after
    the bisections); none while the search goes on, or where every T tried solved or none did."""
    T, lo, hi = _walk(search, verdicts)
    return [lo, hi] if T is None and lo is not None and hi is not None else []


def confirm(search: TSearch, verdicts: dict[int, bool], fresh: dict[int, bool]) -> int | None:
    """The next T for the bracket seeds (``fresh``: their verdicts so far), or None when they are done.

    First the two T that bracket the search's crossing (:func:`bracket`). The search stops where its own seeds' luck
    ran out, so they over-solve the last T they solved (a winner's curse); the bracket seeds' verdicts alone then move
    the bracket: while they solve its upper T the next T up the ladder (x ``factor``, to ``max``), while they fail
    its lower T the next T down (/ ``factor``, to ``start``).
    """
    ends = bracket(search, verdicts)
    if not ends:
        return None
    for T in ends:
        if T not in fresh:
            return T
    for T, go_on, step in ((ends[1], True, _up), (ends[0], False, _down)):
        while fresh[T] == go_on:
            T = step(search, T)
            if T is None:
                break
            if T not in fresh:
                return T
    return None


def _up(search: TSearch, T: int) -> int | None:
    """The next T above T by the search's factor, at most ``max`` (None at max)."""
    return None if T >= search.max else min(search.max, max(T + 1, round(T * search.factor)))


def _down(search: TSearch, T: int) -> int | None:
    """The next T below T by the search's factor, at least ``start`` (None at start)."""
    return None if T <= search.start else max(search.start, min(T - 1, round(T / search.factor)))


def _walk(search: TSearch, verdicts: dict[int, bool]) -> tuple[int | None, int | None, int | None]:
    """The search replayed on the verdicts: the next T to visit (None: done), and the last T solved and first failed."""
    ladder = search.ladder()
    lo = None
    for T in ladder:
        if T not in verdicts:
            return T, lo, None
        if not verdicts[T]:
            hi = T
            break
        lo = T
    else:
        return None, lo, None  # solved up to max
    if lo is None:
        return None, None, hi  # failed at the start
    for _ in range(search.refine):
        mid = round(math.sqrt(lo * hi))
        if mid <= lo or mid >= hi:
            break
        if mid not in verdicts:
            return mid, lo, hi
        lo, hi = (mid, hi) if verdicts[mid] else (lo, mid)
    return None, lo, hi


def visited(search: TSearch, verdicts: dict[int, bool]) -> list[int]:
    """The T the search has visited so far, in the order it visited them (replayed from the verdicts)."""
    seen: dict[int, bool] = {}
    while (T := next_T(search, seen)) is not None and T in verdicts:
        seen[T] = verdicts[T]
    return list(seen)
