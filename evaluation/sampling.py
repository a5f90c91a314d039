"""Episode drawing exactly as the authors' loaders draw (docs/evaluation.md, "Drawing episodes").

Every random choice of every loader is `np.random.choice(items, 1, replace=False)[0]` on numpy's
legacy global RandomState seeded once with 0, in episode order. That call is the first entry of
a legacy `permutation(len(items))` (a Fisher-Yates shuffle from the end: it consumes the stream
according to the list's length, and a one-item list consumes nothing), so `draw` below takes
exactly that. A private `RandomState(seed)` yields the same stream as the global one after
`np.random.seed(seed)` without sharing state with anything else in the process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from insid3.errors import Insid3Error

T = TypeVar("T")
R = TypeVar("R")

#: The seed of the authors' evaluation script (its --seed default).
AUTHORS_SEED = 0


class SamplingError(Insid3Error):
    """A draw the authors' loader cannot make: an empty list (their ValueError), or a loop that
    can never end (a class whose only image is the target: their loader hangs)."""


def episode_rng(seed: int = AUTHORS_SEED) -> np.random.RandomState:
    """The legacy MT19937 stream of `np.random.seed(seed)`, private to one run."""
    return np.random.RandomState(seed)


def draw(rng: np.random.RandomState, items: Sequence[T], what: str = "list") -> T:
    """items[permutation(len(items))[0]]: the authors' `np.random.choice(items, 1, replace=False)[0]`."""
    if len(items) == 0:
        raise SamplingError(f"cannot draw from an empty {what} (the authors' loader raises ValueError here)")
    return items[int(rng.permutation(len(items))[0])]


def draw_references(
    rng: np.random.RandomState,
    items: Sequence[T],
    *,
    target_key: object,
    shots: int,
    key: Callable[[T], object] = lambda item: item,
    accept: Callable[[T], R] | None = None,
    what: str = "class",
) -> list[R]:
    """The authors' reference loop: draw, keep the draw unless its key is the target's, stop when
    `shots` are kept (checked after every draw). Repeats are allowed. `accept(item)` runs right
    after an item is kept (its own draws, e.g. PACO's object, come at that point of the stream)
    and its result is what is kept.

    A list whose every entry has the target's key would loop forever in the authors' code: a
    SamplingError says so instead.
    """
    if shots < 1:
        raise SamplingError(f"shots must be >= 1, got {shots}")
    if all(key(item) == target_key for item in items):
        raise SamplingError(
            f"{what} has no image other than the target {target_key}: the authors' reference loop never ends here"
        )
    kept: list[R] = []
    while True:
        item = draw(rng, items, what)
        if key(item) != target_key:
            kept.append(accept(item) if accept is not None else item)  # type: ignore[arg-type]
        if len(kept) == shots:
            return kept
