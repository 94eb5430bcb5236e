"""Per-sample scores behind one interface (:class:`posecurator.scoring.base.PoseScorer`)."""

from posecurator.scoring.base import PoseScorer, get_scorer, register_scorer, SCORERS

__all__ = ["PoseScorer", "get_scorer", "register_scorer", "SCORERS"]
