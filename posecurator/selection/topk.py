"""Top-K selection of scored samples: PoseSyn's hard (challenging) and easy (non-challenging)
sets (Eq. 2-3), and the random selection of the same size its "without EEM" ablation uses.

Scores follow the scorer convention (higher = harder / worse). NaN scores (samples that could not
be scored) are never selected, by any of the three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_TOP = 500     # K_C of the paper
DEFAULT_BOTTOM = 200  # K_NC of the paper


@dataclass
class HardEasySelection:
    """Rows of the scored set: ``hard`` (K_C,) hardest first, ``easy`` (K_NC,) easiest first,
    ``random`` (K_C,) a seeded random draw of scorable rows for the "without EEM" ablation (in
    ascending row order), ``n_scored`` the scorable rows, ``requested`` (top, bottom)."""

    hard: np.ndarray
    easy: np.ndarray
    random: np.ndarray
    n_scored: int
    requested: tuple[int, int]

    def to_dict(self) -> dict:
        return {"hard": self.hard.tolist(), "easy": self.easy.tolist(), "random": self.random.tolist(),
                "n_scored": self.n_scored, "requested": list(self.requested)}


def select_hard_easy(scores, *, top: int = DEFAULT_TOP, bottom: int = DEFAULT_BOTTOM, seed: int = 0) -> HardEasySelection:
    """The ``top`` highest-scoring rows (hard, Eq. 2) and the ``bottom`` lowest (easy, Eq. 3) of
    (N,) ``scores``, and ``top`` random scorable rows.

    Rows are ordered by (score, row): the easy set is the start of that order, the hard set its
    end read backwards (among equal scores the later row counts as harder), so the result is
    deterministic and the two sets never share a row. When fewer than
    ``top + bottom`` rows are scorable the two sets would overlap; they are then shrunk in
    proportion so they never share a row (``requested`` keeps what was asked).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be (N,), got {scores.shape}")
    if top < 0 or bottom < 0:
        raise ValueError(f"top and bottom must be >= 0, got {top}, {bottom}")
    scored = np.flatnonzero(np.isfinite(scores))
    n = len(scored)
    k_top, k_bottom = top, bottom
    if top + bottom > n:  # shrink both in proportion so that they never share a row
        k_top = int(round(n * top / (top + bottom)))
        k_bottom = n - k_top
    # one total order (score, then row): easy are its first rows, hard its last, so they never share one
    ascending = scored[np.argsort(scores[scored], kind="stable")]
    easy = ascending[:k_bottom]
    hard = ascending[::-1][:k_top]
    rng = np.random.default_rng(seed)
    random = np.sort(rng.choice(scored, size=min(top, n), replace=False)) if n else np.zeros(0, np.int64)
    return HardEasySelection(hard.astype(np.int64), easy.astype(np.int64), random.astype(np.int64), n, (top, bottom))


def select_hard_easy_reference(scores, *, top: int = DEFAULT_TOP, bottom: int = DEFAULT_BOTTOM) -> tuple[list[int], list[int]]:
    """Plain version of the hard and easy rows of :func:`select_hard_easy` (when they do not
    overlap): sort (score, row) pairs; for tests."""
    pairs = [(float(s), i) for i, s in enumerate(scores) if np.isfinite(s)]
    hard = [i for s, i in sorted(pairs, key=lambda p: (-p[0], -p[1]))][:top]
    easy = [i for s, i in sorted(pairs, key=lambda p: (p[0], p[1]))][:bottom]
    return hard, easy
