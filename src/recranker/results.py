"""`StudyResults`: a study's evaluation as typed records (DESIGN section 8).

The results stage builds them (`recranker.stages.results`), writes them as
`results/summary.json` and the report and the CLI read them. On disk each system is one flat row
(`{"system", "NDCG@3", "p NDCG@3", "cond NDCG@3", ...}`), the layout earlier runs wrote, so their
summaries still load.

| record            | what                                                                  |
|-------------------|-----------------------------------------------------------------------|
| `StudyResults`    | the measures, graded or not, and one `BackboneResults` per backbone   |
| `BackboneResults` | evaluated and covered users, hybrid weights, one `SystemResult` per   |
|                   | system, listwise parse statistics and the cost of each LLM pass       |
| `SystemResult`    | one system's population means, p-values against the backbone and      |
|                   | conditional means (users whose target is a candidate), per measure    |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recranker.artifacts import write_json
from recranker.metrics import Measure


@dataclass(frozen=True)
class SystemResult:
    """One system on one backbone's evaluated users: per measure, the population mean, the
    paired t-test's p-value against the backbone (None for the backbone itself), the mean over
    the covered users (None when no user is covered), and 95% bootstrap confidence intervals of
    the population mean (`ci`) and of its difference from the backbone (`diff_ci`; empty for the
    backbone itself and in summaries written before they existed)."""

    system: str
    mean: dict[Measure, float]
    p: dict[Measure, float | None]
    conditional: dict[Measure, float | None]
    ci: dict[Measure, tuple[float, float]] = field(default_factory=dict)
    diff_ci: dict[Measure, tuple[float, float]] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The flat row of results/summary.json."""
        out: dict[str, Any] = {"system": self.system}
        for m in self.mean:
            out.update({str(m): self.mean[m], f"p {m}": self.p[m], f"cond {m}": self.conditional[m],
                        f"ci {m}": _pair(self.ci.get(m)), f"diff ci {m}": _pair(self.diff_ci.get(m))})
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any], measures: list[Measure]) -> "SystemResult":
        """Read back a flat row."""
        return cls(row["system"], {m: row[str(m)] for m in measures}, {m: row.get(f"p {m}") for m in measures},
                   {m: row.get(f"cond {m}") for m in measures}, _intervals(row, "ci", measures),
                   _intervals(row, "diff ci", measures))


def _intervals(row: dict[str, Any], key: str, measures: list[Measure]) -> dict[Measure, tuple[float, float]]:
    """The intervals a flat row holds under "<key> <measure>" (those it has)."""
    return {m: _pair(row[f"{key} {m}"]) for m in measures if row.get(f"{key} {m}") is not None}


def _pair(value) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


@dataclass(frozen=True)
class BackboneResults:
    """Every system on one backbone's candidates.

    `weight_tuning` says how the hybrid's weights were chosen (`tuned`, and when tuned `metric`,
    `valid_value`, `valid_users`, `grid`); `listwise` holds the parse outcomes and position
    counts of each LLM arm's listwise answers; `cost` the summary of each LLM pass
    ("<arm>/<target>": seconds, users, tokens per user); `fusion` how the tuned hybrid and the
    learned fusion were fitted; `diagnostics` the per-task signal of each LLM arm on the
    covered test users (AUC of the target against the other candidates, with 95% bootstrap CIs)
    and the position test of its first listwise pick, raw and calibrated.
    """

    users: int
    covered: int
    weights: tuple[float, float, float]
    weight_tuning: dict[str, Any]
    systems: list[SystemResult]
    listwise: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost: dict[str, dict[str, Any]] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def system(self, name: str) -> SystemResult:
        """The result of system `name` (KeyError naming the systems there are)."""
        for s in self.systems:
            if s.system == name:
                return s
        raise KeyError(f"no system {name!r}; there are {', '.join(s.system for s in self.systems)}")


@dataclass(frozen=True)
class StudyResults:
    """A study's evaluation: `measures` (HR@k / NDCG@k), whether relevance was `graded` (ALRO's
    future ratings) and the results of each backbone."""

    measures: list[Measure]
    graded: bool
    backbones: dict[str, BackboneResults]

    def to_json(self) -> dict[str, Any]:
        """The results/summary.json layout."""
        return {"metrics": [str(m) for m in self.measures], "graded": self.graded, "backbones": {
            name: {"users": b.users, "covered": b.covered, "weights": list(b.weights), "weight_tuning": b.weight_tuning,
                   "systems": [s.row() for s in b.systems], "listwise": b.listwise, "cost": b.cost,
                   "fusion": b.fusion, "diagnostics": b.diagnostics}
            for name, b in self.backbones.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StudyResults":
        """Read the results/summary.json layout."""
        measures = [Measure.parse(m) for m in data["metrics"]]
        backbones = {name: BackboneResults(
            users=b["users"], covered=b["covered"], weights=tuple(b["weights"]), weight_tuning=b["weight_tuning"],
            systems=[SystemResult.from_row(row, measures) for row in b["systems"]],
            listwise=b.get("listwise", {}), cost=b.get("cost", {}), fusion=b.get("fusion", {}),
            diagnostics=b.get("diagnostics", {})) for name, b in data["backbones"].items()}
        return cls(measures, bool(data.get("graded", False)), backbones)

    def save(self, path: str | Path) -> None:
        """Write as JSON, atomically."""
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "StudyResults":
        """Read a file written by `save`."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
