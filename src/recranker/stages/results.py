"""The results stage: a study's results, every system's lists, per-user metrics, significance against the backbone.

For each backbone the evaluated test users are the population. The LLM reorders the candidates of
the users whose target is among them; every other user keeps the backbone's list, which scores 0
under any reordering, so the population metrics are exactly those of running the LLM on everyone.
The conditional metrics average over the covered users only.

Systems (rows of the report):

| name            | list                                                                  |
|-----------------|-----------------------------------------------------------------------|
| backbone        | the backbone's top-m                                                  |
| pointwise       | U_point (tuned LLM)                                                   |
| pairwise        | U_pair                                                                |
| listwise        | U_list from the parsed generated answer                               |
| listwise 1-pass | U_list from the first answer position's identifier logits             |
| listwise 1-pass calibrated | the same, the log-probabilities less the position prior       |
| hybrid          | the paper's: a1 U_point + a2 U_pair + a3 U_list (weights tuned on validation users) |
| tuned hybrid    | + a0 U_retrieval, calibrated listwise term, weights and a0 tuned on validation |
| learned fusion  | pairwise logistic regression on candidate features, fitted on validation |
| bootstrapping   | U_retrieval + the listwise term averaged over B shuffled passes       |
| zero-shot hybrid| the hybrid of the untuned LLM                                         |
| hybrid w/o hints| the hybrid of the tuned LLM asked without hints                       |
| tuned hybrid w/o hints | the tuned hybrid's weights and a0 on the passes without hints  |

(`recranker.stages.fusion` fits the tuned hybrid, the learned fusion and the position priors, and
measures each task's signal.) Every population mean comes with a 95% bootstrap confidence
interval over users, of itself and of its difference from the backbone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recranker.artifacts import atomic_write, read_json
from recranker.config import StudyConfig
from recranker.errors import DataError
from recranker.metrics import covered as covered_users
from recranker.metrics import Measure, per_user
from recranker.ranking.fusion import bootstrap_ci, first_pick_counts
from recranker.ranking.hybrid import hybrid, tune_weights, utilities
from recranker.ranking.llm import RankerOutputs
from recranker.ranking.parse import STATUS_NAMES
from recranker.report import write_report
from recranker.results import BackboneResults, StudyResults, SystemResult
from recranker.split import Split
from recranker.stages.base import writes_run
from recranker.stages.fusion import Fusions, features, fit_fusions, signal_diagnostics
from recranker.stages.population import evaluation_population
from recranker.stages.prompts import full_hint_models
from recranker.stages.rank import Pass, rank_stage, ranking_passes
from recranker.stages.split import prepare_split
from recranker.types import Rankings

SINGLE = {"pointwise": "pointwise", "pairwise": "pairwise", "listwise": "listwise",
          "listwise_logits": "listwise 1-pass", "bootstrapping": "bootstrapping"}


def study_measures(cfg: StudyConfig) -> list[Measure]:
    """HR@k and NDCG@k for the configured cutoffs up to m (NDCG only when graded)."""
    m = cfg.retrieval.candidates
    ks = [k for k in cfg.evaluation.ks if k <= m] or [m]
    names = ["NDCG"] if cfg.evaluation.graded else ["HR", "NDCG"]
    return [Measure(name, k) for name in names for k in ks]


def _replace(base: Rankings, rows: np.ndarray, scores: np.ndarray, out: RankerOutputs) -> Rankings:
    """`base` with the rows of `out`'s users re-sorted by `scores`."""
    items, values = base.items.copy(), base.scores.copy()
    ranked = Rankings.from_scores(out.users, out.items, scores)
    items[rows], values[rows] = ranked.items, ranked.scores
    return Rankings(base.users, items, values)


def paired_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test of a vs b (1.0 when they never differ)."""
    from scipy.stats import ttest_rel

    if np.allclose(a, b):
        return 1.0
    return float(ttest_rel(a, b).pvalue)


#: the LLM passes' outputs and summaries, by pass
Outputs = dict[Pass, tuple[RankerOutputs, dict]]


def study_results(cfg: StudyConfig, split: Split, outputs: Outputs) -> StudyResults:
    """Evaluate every system of every backbone; writes results/<backbone>/per_user.csv and
    results/summary.json under the run directory and returns the results."""
    folder = Path(cfg.run_dir) / "results"
    measures = study_measures(cfg)
    results = StudyResults(measures, cfg.evaluation.graded, {})
    hints = full_hint_models(cfg, split, progress=False) if cfg.prompts.hints.enabled else None
    for backbone in cfg.retrieval.models:
        population, gains = evaluation_population(cfg, split, backbone, "test")
        weights, weight_info = hybrid_weights(cfg, split, backbone, outputs)
        fusions = fit_fusions(cfg, split, backbone, outputs, hints)
        systems = system_lists(cfg, split, population, backbone, outputs, weights, fusions, hints)
        tables = {name: per_user(r, gains, measures) for name, r in systems.items()}
        covered = covered_users(population, gains)  # exactly the users the LLM was asked about
        _write_per_user(folder / backbone / "per_user.csv", tables, covered)
        results.backbones[backbone] = BackboneResults(
            users=len(population), covered=int(covered.sum()), weights=tuple(weights), weight_tuning=weight_info,
            systems=system_results(tables, covered, measures),
            listwise={system: listwise_stats(outputs[Pass(backbone, system, "test")][0])
                      for system in ("tuned", "zero_shot", "no_hints") if Pass(backbone, system, "test") in outputs},
            cost={f"{p.system}/{p.split}": outputs[p][1] for p in outputs if p.backbone == backbone},
            fusion=fusions.info,
            diagnostics=signal_diagnostics(cfg, split, backbone, outputs, fusions, weights, population, gains, hints))
    results.save(folder / "summary.json")
    return results


def hybrid_weights(cfg: StudyConfig, split: Split, backbone: str, outputs: Outputs) -> tuple[tuple, dict]:
    """The hybrid's weights for `backbone`: tuned on its validation pass (a grid over the simplex
    maximising `ranking.tune_metric`) when configured and run, else `ranking.weights`; and how
    they were chosen."""
    rcfg, valid_pass, test_pass = cfg.ranking, Pass(backbone, "tuned", "valid"), Pass(backbone, "tuned", "test")
    if not (rcfg.tune_weights and valid_pass in outputs):
        return rcfg.weights, {"tuned": False}
    valid = outputs[valid_pass][0]
    if not (len(valid) and len(outputs[test_pass][0])):
        return rcfg.weights, {"tuned": False}
    _, gains = evaluation_population(cfg, split, backbone, "valid")
    utils = utilities(valid, rcfg.constants, cfg.prompts.listwise_top, rcfg.listwise)
    weights, value, grid = tune_weights(utils, valid, gains, rcfg.tune_metric, rcfg.weight_step, rcfg.listwise)
    return weights, {"tuned": True, "metric": str(rcfg.tune_metric), "valid_value": value, "valid_users": len(valid),
                     "grid": grid}


def system_lists(cfg: StudyConfig, split: Split, population: Rankings, backbone: str, outputs: Outputs,
                 weights: tuple, fusions: Fusions, hints) -> dict[str, Rankings]:
    """Every system's lists of the evaluated users: the backbone's, each single task's, the
    hybrids, the fusions and the baselines' hybrids (the LLM's users re-sorted, every other user
    unchanged)."""
    rcfg, top = cfg.ranking, cfg.prompts.listwise_top
    position = {int(u): k for k, u in enumerate(population.users)}
    systems: dict[str, Rankings] = {"backbone": population}

    def add(name: str, out: RankerOutputs, scores: np.ndarray) -> None:
        rows = np.array([position[int(u)] for u in out.users], dtype=np.int64)
        systems[name] = _replace(population, rows, scores, out)

    test = outputs[Pass(backbone, "tuned", "test")][0]
    utils = utilities(test, rcfg.constants, top, rcfg.listwise) if len(test) else {}
    calibrated = fusions.calibrated(cfg, "tuned", test)
    for key, name in SINGLE.items():
        if key in utils and (key != "bootstrapping" or "bootstrapping" in rcfg.baselines):
            add(name, test, utils[key])
        if key == "listwise_logits" and key in utils and calibrated is not test:
            add("listwise 1-pass calibrated", test,
                utilities(calibrated, rcfg.constants, top, "logits")["listwise_logits"])
    if utils:
        add("hybrid", test, hybrid(utils, weights, rcfg.listwise))
    if utils and fusions.weights is not None:
        add("tuned hybrid", test, fusions.tuned_hybrid(cfg, test))
    if len(test) and fusions.learned is not None:
        add("learned fusion", test, fusions.learned.scores(features(cfg, split, calibrated, population, "test", hints)))
    for system, name in (("zero_shot", "zero-shot hybrid"), ("no_hints", "hybrid w/o hints")):
        other = outputs.get(Pass(backbone, system, "test"), (None,))[0]
        if other is not None and len(other):
            add(name, other, hybrid(utilities(other, rcfg.constants, top, rcfg.listwise), weights, rcfg.listwise))
            if system == "no_hints" and fusions.weights is not None:
                add("tuned hybrid w/o hints", other, fusions.tuned_hybrid(cfg, other, system))
    return systems


def system_results(tables: dict[str, pd.DataFrame], covered: np.ndarray, measures: list[Measure]) -> list[SystemResult]:
    """Each system's population means, paired t-tests against the backbone, conditional means and
    95% bootstrap confidence intervals (users resampled; the same resamples for every system)."""
    base = tables["backbone"]
    out = []
    for name, table in tables.items():
        values = {m: table[str(m)].to_numpy() for m in measures}
        differences = {m: v - base[str(m)].to_numpy() for m, v in values.items()}
        out.append(SystemResult(
            name, {m: float(v.mean()) for m, v in values.items()},
            {m: None if name == "backbone" else paired_test(v, base[str(m)].to_numpy()) for m, v in values.items()},
            {m: float(v[covered].mean()) if covered.any() else None for m, v in values.items()},
            {m: bootstrap_ci(v) for m, v in values.items()},
            {} if name == "backbone" else {m: bootstrap_ci(d) for m, d in differences.items()}))
    return out


def _write_per_user(path: Path, tables: dict[str, pd.DataFrame], covered: np.ndarray) -> None:
    frame = pd.concat(dict(tables), axis=1)
    frame.columns = [f"{a} {b}" for a, b in frame.columns]
    frame.insert(0, "covered", covered)
    with atomic_write(path) as fh:
        frame.to_csv(fh, float_format="%.6g")


def listwise_stats(out: RankerOutputs) -> dict:
    """Parse outcomes of the generated listwise answers (ok / repaired / unparsable shares) and the
    position bias: how often the top-ranked candidate sat at each shown position (generated and
    one-pass), over every listwise pass."""
    stats: dict = {"answers": int((out.list_status >= 0).sum())}
    generated = out.list_status >= 0
    if generated.any():
        for code, name in enumerate(STATUS_NAMES):
            stats[name] = float((out.list_status[generated] == code).mean())
    m = out.items.shape[1]
    if len(out):
        stats["top1_position_logits"] = first_pick_counts(out).tolist()
        shown_pos = np.argsort(out.list_shown, axis=-1)  # (U, B, m): column -> shown position
        if generated.any():
            top_generated = np.argmin(out.list_rank, axis=-1)
            picked = np.take_along_axis(shown_pos, top_generated[..., None], -1)[..., 0][generated]
            stats["top1_position_generated"] = np.bincount(picked.ravel(), minlength=m).tolist()
    return stats


@writes_run
def study_report(cfg: StudyConfig) -> tuple[StudyResults, Path]:
    """Results and report from the finished LLM passes (DataError naming the first one missing)."""
    outputs: Outputs = {}
    for p in ranking_passes(cfg):
        stage_obj = rank_stage(cfg, *p)
        if not stage_obj.done():
            raise DataError(stage_obj.path, "this LLM pass has not finished with the config's settings; "
                            "run `recranker rank` (or `recranker run`) first")
        outputs[p] = (RankerOutputs.load(stage_obj.path / "outputs.npz"), read_json(stage_obj.path / "summary.json"))
    return results_and_report(cfg, prepare_split(cfg), outputs)


def results_and_report(cfg: StudyConfig, split: Split, outputs: Outputs) -> tuple[StudyResults, Path]:
    """`study_results` of the LLM passes' `outputs`, then the report written from them."""
    results = study_results(cfg, split, outputs)
    return results, write_report(cfg, results)
