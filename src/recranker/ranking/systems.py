"""The ranking systems a study fits on its validation users, and the one a service serves.

A system turns an LLM pass's answers (`RankerOutputs`) into one score per candidate:

| system           | value            | score                                                           |
|------------------|------------------|-----------------------------------------------------------------|
| `hybrid`         | `Hybrid`         | the paper's a1 U_point + a2 U_pair + a3 U_list                  |
| `tuned hybrid`   | `Hybrid`         | + a0 U_retrieval, the listwise logits less the position prior   |
| `learned fusion` | `LearnedFusion`  | a pairwise logistic regression on candidate features            |

`Systems` holds one backbone's fitted systems, their validation values and the one the study
selected on validation (`selected`: the tuned hybrid, or the learned fusion when its cross-fitted
validation value beats the tuned hybrid's); the results stage writes it as
results/<backbone>/systems.json and `recranker.serve.Reranker` serves from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from recranker.artifacts import read_json, write_json
from recranker.ranking.config import SERVABLE, RankingConfig, UtilityConstants
from recranker.ranking.fusion import LearnedFusion, calibrate
from recranker.ranking.hybrid import hybrid, retrieval_utility, utilities
from recranker.ranking.llm import RankerOutputs


@dataclass(frozen=True)
class Hybrid:
    """A hybrid's settings as one value: U = a1 U_point + a2 U_pair + a3 U_list + a0 U_retrieval
    (`weights` = (a1, a2, a3), `a0`), with the utility `constants`, the listwise answer's length
    `listwise_top`, the listwise order it reads (`listwise`: "generate" or "logits") and the
    position `prior` its listwise logits are calibrated by (None: as they are).

    >>> Hybrid.paper(RankingConfig(), 5).scores(outputs)          # (U, m) the paper's hybrid
    """

    weights: tuple[float, float, float]
    constants: UtilityConstants
    listwise_top: int
    listwise: str = "logits"
    a0: float = 0.0
    prior: np.ndarray | None = field(default=None, compare=False)

    @classmethod
    def paper(cls, ranking: RankingConfig, listwise_top: int,
              weights: tuple[float, float, float] | None = None) -> "Hybrid":
        """The paper's hybrid under `ranking`'s constants and listwise mode, with `weights`
        (None: `ranking.weights`)."""
        return cls(tuple(weights or ranking.weights), ranking.constants, listwise_top, ranking.listwise)

    def with_prior(self, prior: np.ndarray | None) -> "Hybrid":
        """The same hybrid, its listwise logits calibrated by `prior`."""
        return replace(self, prior=prior)

    def calibrated(self, out: RankerOutputs) -> RankerOutputs:
        """`out` with its listwise logits less the position prior (as it is without one)."""
        return out if self.prior is None else calibrate(out, self.prior)

    def utilities(self, out: RankerOutputs) -> dict[str, np.ndarray]:
        """(U, m) each task's utility of `out` (`recranker.ranking.hybrid.utilities`), calibrated."""
        return utilities(self.calibrated(out), self.constants, self.listwise_top, self.listwise)

    def scores(self, out: RankerOutputs) -> np.ndarray:
        """(U, m) the hybrid's utility of each candidate of `out`."""
        total = hybrid(self.utilities(out), self.weights, self.listwise)
        return total + self.a0 * retrieval_utility(*out.items.shape, self.constants) if self.a0 else total

    def to_json(self) -> dict[str, Any]:
        return {"weights": list(self.weights), "a0": self.a0, "constants": self.constants.model_dump(),
                "listwise_top": self.listwise_top, "listwise": self.listwise,
                "prior": None if self.prior is None else self.prior.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Hybrid":
        prior = data.get("prior")
        return cls(tuple(float(w) for w in data["weights"]), UtilityConstants(**data["constants"]),  # type: ignore[arg-type]
                   int(data["listwise_top"]), data["listwise"], float(data.get("a0", 0.0)),
                   None if prior is None else np.asarray(prior, dtype=np.float64))


@dataclass
class Systems:
    """One backbone's fitted systems: the paper's `hybrid`, the `tuned` hybrid and the `learned`
    fusion (None when not fitted), their values on the validation users (`validation`, by system
    name; the learned fusion's cross-fitted), and the `selected` one."""

    hybrid: Hybrid
    tuned: Hybrid | None = None
    learned: LearnedFusion | None = None
    validation: dict[str, float] = field(default_factory=dict)
    selected: str = "hybrid"

    def available(self) -> list[str]:
        """The systems that were fitted, in `SERVABLE`'s order."""
        have = {"hybrid": True, "tuned hybrid": self.tuned is not None, "learned fusion": self.learned is not None}
        return [name for name in SERVABLE if have[name]]

    def scores(self, name: str, out: RankerOutputs, learned_features: np.ndarray | None = None) -> np.ndarray:
        """(U, m) system `name`'s score of each candidate of `out` (the learned fusion's from its
        `learned_features`, `recranker.ranking.fusion.candidate_features` of `out` calibrated by the
        tuned hybrid's prior)."""
        if name not in self.available():
            raise KeyError(f"no system {name!r} was fitted; there are {', '.join(self.available())}")
        if name == "learned fusion":
            if learned_features is None:
                raise ValueError("the learned fusion scores candidate features: give learned_features")
            return self.learned.scores(learned_features)  # type: ignore[union-attr]
        return (self.tuned if name == "tuned hybrid" else self.hybrid).scores(out)  # type: ignore[union-attr]

    def select(self) -> str:
        """The validated system: the tuned hybrid (which falls back to the backbone's order when the
        LLM adds nothing), or the learned fusion when its validation value is higher; the paper's
        hybrid when neither was fitted."""
        if self.tuned is None:
            return "hybrid"
        values = self.validation
        if self.learned is not None and values.get("learned fusion", -np.inf) > values.get("tuned hybrid", np.inf):
            return "learned fusion"
        return "tuned hybrid"

    def save(self, path: str | Path) -> None:
        """Write as JSON, atomically."""
        write_json(path, {"selected": self.selected, "validation": self.validation, "hybrid": self.hybrid.to_json(),
                          "tuned hybrid": None if self.tuned is None else self.tuned.to_json(),
                          "learned fusion": None if self.learned is None else self.learned.to_json()})

    @classmethod
    def load(cls, path: str | Path) -> "Systems":
        """Read a file written by `save`."""
        data = read_json(path)
        tuned, learned = data.get("tuned hybrid"), data.get("learned fusion")
        return cls(Hybrid.from_json(data["hybrid"]), None if tuned is None else Hybrid.from_json(tuned),
                   None if learned is None else LearnedFusion.from_json(learned), dict(data.get("validation", {})),
                   data["selected"])
