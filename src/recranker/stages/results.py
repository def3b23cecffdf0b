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

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from recranker.artifacts import atomic_write, read_json, write_json
from recranker.config import StudyConfig
from recranker.errors import DataError
from recranker.metrics import covered as covered_users
from recranker.metrics import Measure, per_user
from recranker.arms import ARMS, MAIN_ARM
from recranker.ranking.fusion import bootstrap_ci, first_pick_counts
from recranker.ranking.hybrid import tune_weights
from recranker.ranking.systems import Hybrid
from recranker.ranking.llm import RankerOutputs
from recranker.ranking.parse import STATUS_NAMES
from recranker.report import write_report
from recranker.results import BackboneResults, StudyResults, SystemResult
from recranker.runs import INPUTS_FILE
from recranker.split import Split
from recranker.stages.base import writes_run
from recranker.stages.fusion import Fusions, features, fit_fusions, signal_diagnostics
from recranker.stages.population import evaluation_population
from recranker.stages.prompts import full_hint_models
from recranker.stages.rank import Pass, rank_stage, ranking_passes
from recranker.stages.retrieval import retrieval_stage
from recranker.stages.split import prepare_split, split_stage
from recranker.stages.tune import tune_stage
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
        fusions = fit_fusions(cfg, split, backbone, outputs, hints, weights)
        systems = system_lists(cfg, split, population, backbone, outputs, fusions, hints)
        tables = {name: per_user(r, gains, measures) for name, r in systems.items()}
        covered = covered_users(population, gains)  # exactly the users the LLM was asked about
        _write_per_user(folder / backbone / "per_user.csv", tables, covered)
        write_systems(folder / backbone, backbone, outputs, fusions)
        results.backbones[backbone] = BackboneResults(
            users=len(population), covered=int(covered.sum()), weights=tuple(weights), weight_tuning=weight_info,
            systems=system_results(tables, covered, measures),
            listwise={str(arm): listwise_stats(outputs[Pass(backbone, arm, "test")][0])
                      for arm in ARMS if Pass(backbone, arm, "test") in outputs},
            cost={f"{p.arm}/{p.target}": outputs[p][1] for p in outputs if p.backbone == backbone},
            fusion=fusions.info,
            diagnostics=signal_diagnostics(cfg, split, backbone, outputs, fusions, population, gains, hints))
    results.save(folder / "summary.json")
    write_inputs(cfg, folder, list(outputs))
    return results


def write_systems(folder: Path, backbone: str, outputs: Outputs, fusions: Fusions) -> None:
    """<backbone>/systems.json (the fitted systems and the selected one: what a service serves) and
    <backbone>/valid_lists/<system>.npz (each system's lists of the validation pass's users: what a
    service must reproduce for them)."""
    fusions.systems.save(folder / "systems.json")
    valid = outputs.get(Pass(backbone, MAIN_ARM, "valid"), (None,))[0]
    if valid is None or not len(valid):
        return
    for name, scores in system_scores(fusions, valid, fusions.valid_features).items():
        Rankings.from_scores(valid.users, valid.items, scores).save(folder / "valid_lists" / f"{name.replace(' ', '_')}.npz")


def system_scores(fusions: Fusions, out: RankerOutputs, learned_features: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """(U, m) the score of every fitted system on the main arm's pass `out` (the learned fusion's
    only when its `learned_features` are given)."""
    systems = fusions.systems
    return {name: systems.scores(name, out, learned_features) for name in systems.available()}


def write_inputs(cfg: StudyConfig, folder: Path, passes: list[Pass]) -> None:
    """results/inputs.json: the fingerprints of the stages these results were built from, and
    results/config.yaml: the config they were computed with (`recranker.runs.FinishedRun` checks
    a served run against them)."""
    hints = cfg.prompts.hints
    inputs = {"split": split_stage(cfg).inputs, f"tune/{cfg.tuning.variant}": tune_stage(cfg).inputs}
    for name in dict.fromkeys([hints.rating_model, hints.ranking_model, *cfg.retrieval.models]):
        inputs[f"retrieval/{name}"] = retrieval_stage(cfg, name).inputs
    inputs.update({f"rank/{p.backbone}/{p.arm}/{p.target}": rank_stage(cfg, *p).inputs for p in passes})
    with atomic_write(folder / "config.yaml") as fh:
        fh.write(cfg.to_yaml())
    write_json(folder / INPUTS_FILE, inputs)


def hybrid_weights(cfg: StudyConfig, split: Split, backbone: str, outputs: Outputs) -> tuple[tuple, dict]:
    """The hybrid's weights for `backbone`: tuned on the main arm's validation pass (a grid over
    the simplex maximising `ranking.tune_metric`) when configured and run, else `ranking.weights`;
    and how they were chosen."""
    rcfg, valid_pass, test_pass = cfg.ranking, Pass(backbone, MAIN_ARM, "valid"), Pass(backbone, MAIN_ARM, "test")
    if not (rcfg.tune_weights and valid_pass in outputs):
        return rcfg.weights, {"tuned": False}
    valid = outputs[valid_pass][0]
    if not (len(valid) and len(outputs[test_pass][0])):
        return rcfg.weights, {"tuned": False}
    _, gains = evaluation_population(cfg, split, backbone, "valid")
    utils = Hybrid.paper(rcfg, cfg.prompts.listwise_top).utilities(valid)
    weights, value, grid = tune_weights(utils, valid, gains, rcfg.tune_metric, rcfg.weight_step, rcfg.listwise)
    return weights, {"tuned": True, "metric": str(rcfg.tune_metric), "valid_value": value, "valid_users": len(valid),
                     "grid": grid}


def system_lists(cfg: StudyConfig, split: Split, population: Rankings, backbone: str, outputs: Outputs,
                 fusions: Fusions, hints) -> dict[str, Rankings]:
    """Every system's lists of the evaluated users: the backbone's, each single task's, the
    hybrids, the fusions and the baseline arms' hybrids (the LLM's users re-sorted, every other
    user unchanged)."""
    position = {int(u): k for k, u in enumerate(population.users)}
    systems: dict[str, Rankings] = {"backbone": population}

    def add(name: str, out: RankerOutputs, scores: np.ndarray) -> None:
        rows = np.array([position[int(u)] for u in out.users], dtype=np.int64)
        systems[name] = _replace(population, rows, scores, out)

    test = outputs[Pass(backbone, MAIN_ARM, "test")][0]
    if len(test):
        for name, scores in single_task_scores(cfg, fusions, test).items():
            add(name, test, scores)
        x = features(cfg, split, fusions.calibrated(cfg, MAIN_ARM, test), population, "test", hints)
        for name, scores in system_scores(fusions, test, x).items():
            add(name, test, scores)
    for arm, spec in ARMS.items():
        other = outputs.get(Pass(backbone, arm, "test"), (None,))[0]
        if arm == MAIN_ARM or other is None or not len(other):
            continue
        add(spec.hybrid_row, other, fusions.systems.hybrid.scores(other))
        tuned = fusions.tuned_hybrid(cfg, arm)
        if spec.tuned_hybrid_row is not None and tuned is not None:
            add(spec.tuned_hybrid_row, other, tuned.scores(other))
    return systems


def single_task_scores(cfg: StudyConfig, fusions: Fusions, test: RankerOutputs) -> dict[str, np.ndarray]:
    """(U, m) each single-task system's utility on the main arm's test pass, by report row (the
    calibrated one-pass listwise when there is a prior; bootstrapping when `ranking.bootstrap` > 1)."""
    paper = fusions.systems.hybrid
    utils = paper.utilities(test)
    calibrated = fusions.calibrated(cfg, MAIN_ARM, test)
    scores = {}
    for key, name in SINGLE.items():
        if key in utils and (key != "bootstrapping" or cfg.ranking.bootstrap > 1):
            scores[name] = utils[key]
        if key == "listwise_logits" and key in utils and calibrated is not test:
            by_logits = replace(paper, listwise="logits")  # the one-pass order, whatever the hybrid reads
            scores["listwise 1-pass calibrated"] = by_logits.utilities(calibrated)["listwise_logits"]
    return scores


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
    return results, write_report(cfg.report_header(), results)
