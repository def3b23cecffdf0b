"""Settings of the evaluation: the cutoffs of HR@k and NDCG@k, and graded relevance."""

from __future__ import annotations

from pydantic import Field, field_validator

from recranker.settings import Settings


class EvaluationConfig(Settings):
    """Cutoffs of HR@k and NDCG@k."""

    ks: list[int] = Field(default_factory=lambda: [3, 5, 10, 20])
    graded: bool = Field(False, description="LLM ranking metrics with graded relevance from the user's future "
                         "ratings (ALRO's protocol) instead of the single test target")

    @field_validator("ks")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("cutoffs must be a non-empty list of positive integers")
        return sorted(set(value))
