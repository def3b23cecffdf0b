"""The fusions of a study's results stage and the signal diagnostics (`recranker.ranking.fusion`).

For each backbone, from the LLM passes' outputs:
- the position prior of each LLM system's listwise logits: the tuned system's from its validation
  pass (as a deployment would have it), a baseline's from its own test pass (it has no other; no
  label is read either way);
- the tuned hybrid's weights and backbone weight a0, on all covered validation users;
- the learned fusion, fitted on the covered validation users' candidates;
- per LLM system, on the covered test users: the AUC of the target against the other candidates
  under each task's score (with 95% bootstrap CIs) and where its first listwise pick was shown,
  raw and calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recranker.config import StudyConfig
from recranker.ranking.fusion import (FEATURES, LearnedFusion, bootstrap_ci, calibrate, candidate_features,
                                      first_pick_counts, pairwise_wins, position_prior, position_test, relevance,
                                      target_auc, tune_fusion)
from recranker.ranking.hybrid import hybrid, mean_metric, retrieval_utility, utilities
from recranker.ranking.llm import RankerOutputs
from recranker.split import Split
from recranker.stages.population import evaluation_population
from recranker.stages.rank import Pass
from recranker.types import Rankings


@dataclass
class Fusions:
    """What the results stage fitted for one backbone: position priors by LLM system, the tuned
    hybrid's weights and a0, the learned fusion (None when it could not be fitted) and a record
    of how (`info`)."""

    priors: dict[str, np.ndarray] = field(default_factory=dict)
    weights: tuple[float, float, float] | None = None
    a0: float = 0.0
    learned: LearnedFusion | None = None
    info: dict = field(default_factory=dict)

    def calibrated(self, cfg: StudyConfig, system: str, out: RankerOutputs) -> RankerOutputs:
        """`out` with its listwise logits calibrated by `system`'s prior (as it is when
        `ranking.calibrate_positions` is off or there is no prior)."""
        prior = self.priors.get(system)
        return out if prior is None or not cfg.ranking.calibrate_positions else calibrate(out, prior)

    def tuned_hybrid(self, cfg: StudyConfig, out: RankerOutputs, system: str = "tuned") -> np.ndarray:
        """(U, m) the tuned hybrid's utility of `out` (calibrated with `system`'s prior)."""
        rcfg = cfg.ranking
        utils = utilities(self.calibrated(cfg, system, out), rcfg.constants, cfg.prompts.listwise_top, rcfg.listwise)
        return hybrid(utils, self.weights, rcfg.listwise) + self.a0 * retrieval_utility(*out.items.shape, rcfg.constants)


def _outputs(outputs: dict, backbone: str, system: str, split_name: str) -> RankerOutputs | None:
    got = outputs.get(Pass(backbone, system, split_name))
    return got[0] if got is not None and len(got[0]) else None


def features(cfg: StudyConfig, split: Split, out: RankerOutputs, population: Rankings, stage: str,
             hints) -> np.ndarray:
    """The learned fusion's features of `out`'s candidates (`candidate_features`), backbone scores
    from `population`, hints from the full hint models (`hints`; None leaves them 0)."""
    row = {int(u): k for k, u in enumerate(population.users)}
    scores = population.scores[[row[int(u)] for u in out.users]]
    rating = ranking = None
    if hints is not None:
        rating = hints.rating.predict_ratings(out.users, out.items)
        ranking = hints.ranking.score(out.users, out.items, stage)
    return candidate_features(out, scores, rating, ranking)


def fit_fusions(cfg: StudyConfig, split: Split, backbone: str, outputs: dict, hints) -> Fusions:
    """Position priors, the tuned hybrid and the learned fusion of `backbone` (see the module)."""
    fusions = Fusions()
    valid = _outputs(outputs, backbone, "tuned", "valid")
    for system in ("tuned", "zero_shot", "no_hints"):
        source = valid if system == "tuned" and valid is not None else _outputs(outputs, backbone, system, "test")
        if source is not None:
            fusions.priors[system] = position_prior(source)
            fusions.info.setdefault("position_prior", {})[system] = {
                "from": "validation pass" if source is valid else
                "own test pass (no labels, but in-sample: its calibrated picks are even by construction)",
                "log_prior": fusions.priors[system].round(4).tolist()}
    if valid is None:
        return fusions
    rcfg = cfg.ranking
    population, gains = evaluation_population(cfg, split, backbone, "valid")
    calibrated = fusions.calibrated(cfg, "tuned", valid)
    utils = utilities(calibrated, rcfg.constants, cfg.prompts.listwise_top, rcfg.listwise)
    fusions.weights, fusions.a0, value = tune_fusion(utils, valid, gains, rcfg.tune_metric, rcfg.weight_step,
                                                     rcfg.listwise, rcfg.constants, rcfg.backbone_weights)
    backbone_value = mean_metric(valid, np.zeros(valid.items.shape), gains, rcfg.tune_metric)
    fusions.info["tuned_hybrid"] = {"weights": list(fusions.weights), "a0": fusions.a0, "metric": str(rcfg.tune_metric),
                                    "valid_value": value, "valid_backbone": backbone_value, "valid_users": len(valid)}
    if rcfg.learned_fusion:
        x = features(cfg, split, calibrated, population, "valid", hints)
        fusions.learned = LearnedFusion.fit(x, relevance(valid, gains), c=rcfg.learned_c)
        fusions.info["learned_fusion"] = {"model": "pairwise logistic regression (scikit-learn)", "C": rcfg.learned_c,
                                          "pairs": fusions.learned.pairs, "valid_users": len(valid),
                                          "coef": dict(zip(FEATURES, (fusions.learned.coef / fusions.learned.scale)
                                                           .round(4).tolist()))}
    return fusions


def signal_diagnostics(cfg: StudyConfig, split: Split, backbone: str, outputs: dict, fusions: Fusions,
                       weights: tuple, population: Rankings, gains: dict, hints) -> dict:
    """Per LLM system on the covered test users: the AUC (mean, 95% bootstrap CI) of each task's
    score, of the hint models' scores (`hints`, when the study has them), of the paper's hybrid
    (with `weights`) and of the fusions, and the position test of the first listwise pick, raw
    and calibrated."""
    rcfg, top = cfg.ranking, cfg.prompts.listwise_top
    report: dict = {}
    for system in ("tuned", "zero_shot", "no_hints"):
        out = _outputs(outputs, backbone, system, "test")
        if out is None:
            continue
        grades = relevance(out, gains)
        calibrated = fusions.calibrated(cfg, system, out)
        scores = {"backbone": -np.tile(np.arange(out.items.shape[1], dtype=np.float64), (len(out), 1))}
        if not np.isnan(out.point).all():
            scores["expected rating"] = out.point
        if not np.isnan(out.pair_yes).all():
            scores["pairwise wins"] = pairwise_wins(out)
        if out.list_logprob.size and not np.isnan(out.list_logprob).all():
            scores["listwise log-prob"] = out.list_logprob[:, 0]
            scores["listwise log-prob, calibrated"] = calibrated.list_logprob[:, 0]
        if hints is not None:  # what the test prompts' hints say (full hint models), beside what the LLM makes of them
            scores["rating hint"] = hints.rating.predict_ratings(out.users, out.items)
            scores["ranking hint"] = hints.ranking.score(out.users, out.items, "test")
        scores["hybrid"] = hybrid(utilities(out, rcfg.constants, top, rcfg.listwise), weights, rcfg.listwise)
        if fusions.weights is not None:
            scores["tuned hybrid"] = fusions.tuned_hybrid(cfg, out, system)
        if fusions.learned is not None and system == "tuned":
            scores["learned fusion"] = fusions.learned.scores(features(cfg, split, calibrated, population, "test", hints))
        aucs = {}
        for name, s in scores.items():
            values = target_auc(s, grades)
            aucs[name] = {"auc": float(values.mean()) if len(values) else None, "ci": list(bootstrap_ci(values)),
                          "users": len(values)}
        report[system] = {"auc": aucs, "first_pick": position_test(first_pick_counts(out)),
                          "first_pick_calibrated": position_test(first_pick_counts(calibrated))}
    return report
