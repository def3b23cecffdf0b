"""Metrics: HR@k and NDCG@k per user, over full rankings or candidate lists."""

from recranker.metrics.measures import (
    Measure,
    covered,
    default_measures,
    measures,
    per_user,
    single_target_gains,
    summarize,
)

__all__ = [
    "Measure",
    "covered",
    "default_measures",
    "measures",
    "per_user",
    "single_target_gains",
    "summarize",
]
