"""The fusions of a study's results stage and the signal diagnostics (`recranker.ranking.fusion`).

For each backbone, from the LLM passes' outputs:
- the position prior of each arm's listwise logits: the validated arm's from its validation pass
  (as a deployment would have it), a baseline arm's from its own test pass (it has no other; no
  label is read either way);
- the systems (`recranker.ranking.systems.Systems`): the paper's hybrid with its weights, the tuned
  hybrid's weights and backbone weight a0 on all covered validation users, the learned fusion
  fitted on their candidates (its validation value cross-fitted over 5 folds of users:
  `LearnedFusion.cross_fitted`), and the
  system selected on validation;
- per arm, on the covered test users: the AUC of the target against the other candidates under
  each task's score (with 95% bootstrap CIs) and where its first listwise pick was shown, raw and
  calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from recranker.config import StudyConfig
from recranker.arms import ARMS, MAIN_ARM, Arm
from recranker.ranking.fusion import (FEATURES, LearnedFusion, bootstrap_ci, calibrate, candidate_features,
                                      first_pick_counts, pairwise_wins, position_prior, position_test, relevance, target_auc, tune_fusion)
from recranker.ranking.hybrid import mean_metric
from recranker.ranking.llm import RankerOutputs
from recranker.ranking.systems import Hybrid, Systems
from recranker.split import Split
from recranker.stages.population import evaluation_population
from recranker.stages.rank import Pass
from recranker.types import Rankings

@dataclass
class Fusions:
    """What the results stage fitted for one backbone: the position priors by arm, the `systems`
    (paper's hybrid, tuned hybrid, learned fusion, the selected one) and a record of how (`info`)."""

    systems: Systems
    priors: dict[Arm, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    #: (U, m, F) the learned fusion's features of the validation pass (None when it was not fitted)
    valid_features: np.ndarray | None = None

    def prior(self, cfg: StudyConfig, arm: Arm) -> np.ndarray | None:
        """`arm`'s position prior (None when `ranking.calibrate_positions` is off or it has none)."""
        return self.priors.get(arm) if cfg.ranking.calibrate_positions else None

    def calibrated(self, cfg: StudyConfig, arm: Arm, out: RankerOutputs) -> RankerOutputs:
        """`out` with its listwise logits calibrated by `arm`'s prior (as it is without one)."""
        prior = self.prior(cfg, arm)
        return out if prior is None else calibrate(out, prior)

    def tuned_hybrid(self, cfg: StudyConfig, arm: Arm) -> Hybrid | None:
        """The tuned hybrid calibrated by `arm`'s prior (None when it was not fitted)."""
        tuned = self.systems.tuned
        return None if tuned is None else tuned.with_prior(self.prior(cfg, arm))


def _outputs(outputs: dict, backbone: str, arm: Arm, target: str) -> RankerOutputs | None:
    got = outputs.get(Pass(backbone, arm, target))
    return got[0] if got is not None and len(got[0]) else None


def features(cfg: StudyConfig, split: Split, out: RankerOutputs, population: Rankings, target: str,
             hints) -> np.ndarray:
    """The learned fusion's features of `out`'s candidates (`candidate_features`), backbone scores
    from `population`, hints from the full hint models (`hints`; None leaves them 0)."""
    row = {int(u): k for k, u in enumerate(population.users)}
    scores = population.scores[[row[int(u)] for u in out.users]]
    rating = ranking = None
    if hints is not None:
        rating = hints.rating.predict_ratings(out.users, out.items)
        ranking = hints.ranking.score(out.users, out.items, target)
    return candidate_features(out, scores, rating, ranking)


def position_priors(outputs: dict, backbone: str) -> tuple[dict[Arm, np.ndarray], dict]:
    """Each arm's position prior (the validated arm's from its validation pass, when there is one;
    every other from its own test pass) and where each came from."""
    priors, info = {}, {}
    for arm, spec in ARMS.items():
        valid = _outputs(outputs, backbone, arm, "valid") if spec.validated else None
        source = valid if valid is not None else _outputs(outputs, backbone, arm, "test")
        if source is not None:
            priors[arm] = position_prior(source)
            info[str(arm)] = {"from": "validation pass" if source is valid else
                              "own test pass (no labels, but in-sample: its calibrated picks are even by construction)",
                              "log_prior": priors[arm].round(4).tolist()}
    return priors, info


def fit_fusions(cfg: StudyConfig, split: Split, backbone: str, outputs: dict, hints,
                weights: tuple[float, float, float]) -> Fusions:
    """Position priors, the paper's hybrid (with `weights`), the tuned hybrid, the learned fusion
    and the selected system of `backbone` (see the module)."""
    rcfg = cfg.ranking
    fusions = Fusions(Systems(Hybrid.paper(rcfg, cfg.prompts.listwise_top, weights)))
    fusions.priors, prior_info = position_priors(outputs, backbone)
    if prior_info:
        fusions.info["position_prior"] = prior_info
    valid = _outputs(outputs, backbone, MAIN_ARM, "valid")
    if valid is None:
        return fusions
    population, gains = evaluation_population(cfg, split, backbone, "valid")
    calibrated = fusions.calibrated(cfg, MAIN_ARM, valid)
    utils = fusions.systems.hybrid.utilities(calibrated)
    tuned_weights, a0, value = tune_fusion(utils, valid, gains, rcfg.tune_metric, rcfg.weight_step, rcfg.listwise,
                                           rcfg.constants, rcfg.backbone_weights)
    systems = fusions.systems
    systems.tuned = replace(systems.hybrid, weights=tuned_weights, a0=a0, prior=fusions.prior(cfg, MAIN_ARM))
    backbone_value = mean_metric(valid, np.zeros(valid.items.shape), gains, rcfg.tune_metric)
    systems.validation = {"backbone": backbone_value, "hybrid": mean_metric(valid, systems.hybrid.scores(valid), gains,
                                                                            rcfg.tune_metric), "tuned hybrid": value}
    fusions.info["tuned_hybrid"] = {"weights": list(tuned_weights), "a0": a0, "metric": str(rcfg.tune_metric),
                                    "valid_value": value, "valid_backbone": backbone_value, "valid_users": len(valid)}
    if rcfg.learned_fusion:
        x, grades = features(cfg, split, calibrated, population, "valid", hints), relevance(valid, gains)
        fusions.valid_features = x
        systems.learned = LearnedFusion.fit(x, grades, c=rcfg.learned_c)
        systems.validation["learned fusion"] = mean_metric(valid, LearnedFusion.cross_fitted(x, grades, c=rcfg.learned_c, seed=rcfg.seed),
                                                           gains, rcfg.tune_metric)
        fusions.info["learned_fusion"] = {"model": "pairwise logistic regression (scikit-learn)", "C": rcfg.learned_c,
                                          "pairs": systems.learned.pairs, "valid_users": len(valid),
                                          "coef": dict(zip(FEATURES, (systems.learned.coef / systems.learned.scale)
                                                           .round(4).tolist()))}
    systems.selected = systems.select()
    fusions.info["selected"] = {"system": systems.selected, "metric": str(rcfg.tune_metric),
                                "valid": systems.validation}
    return fusions


def signal_diagnostics(cfg: StudyConfig, split: Split, backbone: str, outputs: dict, fusions: Fusions,
                       population: Rankings, gains: dict, hints) -> dict:
    """Per arm on the covered test users: the AUC (mean, 95% bootstrap CI) of each task's score,
    of the hint models' scores (`hints`, when the study has them), of the paper's hybrid and of
    the fusions, and the position test of the first listwise pick, raw and calibrated."""
    report: dict = {}
    for arm in ARMS:
        out = _outputs(outputs, backbone, arm, "test")
        if out is None:
            continue
        calibrated, grades = fusions.calibrated(cfg, arm, out), relevance(out, gains)
        aucs = {}
        for name, s in arm_scores(cfg, split, arm, out, calibrated, fusions, population, hints).items():
            values = target_auc(s, grades)
            aucs[name] = {"auc": float(values.mean()) if len(values) else None, "ci": list(bootstrap_ci(values)),
                          "users": len(values)}
        report[str(arm)] = {"auc": aucs, "first_pick": position_test(first_pick_counts(out)),
                            "first_pick_calibrated": position_test(first_pick_counts(calibrated))}
    return report


def arm_scores(cfg: StudyConfig, split: Split, arm: Arm, out: RankerOutputs, calibrated: RankerOutputs,
               fusions: Fusions, population: Rankings, hints) -> dict[str, np.ndarray]:
    """(U, m) every score of `arm`'s test pass whose AUC the diagnostics report."""
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
    scores["hybrid"] = fusions.systems.hybrid.scores(out)
    tuned = fusions.tuned_hybrid(cfg, arm)
    if tuned is not None:
        scores["tuned hybrid"] = tuned.scores(out)
    if fusions.systems.learned is not None and arm == MAIN_ARM:
        scores["learned fusion"] = fusions.systems.learned.scores(features(cfg, split, calibrated, population, "test",
                                                                           hints))
    return scores
