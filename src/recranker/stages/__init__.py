"""The stages of a study, one module each, writing their artefacts into the run directory
(DESIGN section 9). This is the orchestration layer: it imports the library (`recranker.data`,
`retrieval`, `prompts`, `tuning`, `ranking`, ...), which never imports it.

    split/                 dataset.json, interactions.npz, split.npz, stats.json
    retrieval/<model>/     model.pt, log.json, metrics.json, per_user_{valid,test}.csv,
                           candidates_{valid,test}.npz
    sample/                users.npz (sampled user codes, draw order), summary.json
    hints/<model>/         fold<f>.pt: the hint model fitted without training fold f
    prompts/               <task>.jsonl (chat messages + metadata), stats.json
    tune/<variant>/        adapter/ (or model/), base_model.txt, log.json, loss_curve.png,
                           summary.json, config.yaml; checkpoints/ while it runs (resumed)
    rank/<backbone>/<arm>/<target>/
                           outputs.npz (the LLM's answers on the candidates), summary.json (time,
                           tokens); part-*.npz while it runs (resumed)
    results/               summary.json, config.yaml, inputs.json (the stages it was built from),
                           <backbone>/per_user.csv, <backbone>/systems.json (the fitted systems, the
                           one selected on validation), <backbone>/valid_lists/<system>.npz
    report/                report.md, systems.png, position_bias.png

| module       | stages                      | entry point                  |
|--------------|-----------------------------|------------------------------|
| `split`      | split/                      | `prepare_split`              |
| `retrieval`  | retrieval/<model>/          | `run_retrieval`              |
| `sample`     | sample/                     | `run_sample`                 |
| `prompts`    | hints/, prompts/            | `run_prompts`                |
| `tune`       | tune/<variant>/             | `run_tune`                   |
| `population` | (who is evaluated)          | `llm_candidates`             |
| `rank`       | rank/<backbone>/<arm>/..    | `run_rank`                   |
| `results`    | results/, report/           | `study_report`               |

A stage is skipped when its marker says it finished with the same inputs (config section and the
fingerprints of the stages it reads); otherwise it runs again and overwrites its folder's files.
Every public `run_*` (and `prepare_split`, `study_report`) holds the run directory's lock while it
works (`artifacts.run_lock`): a second process on the same run gets a `RunInUseError`.
"""

from __future__ import annotations

from recranker.config import StudyConfig
from recranker.results import StudyResults
from recranker.stages.base import writes_run
from recranker.stages.population import evaluation_population, llm_candidates
from recranker.stages.prompts import full_hint_models, run_prompts
from recranker.stages.models import ModelCache, model_folder
from recranker.stages.rank import Pass, rank_stage, ranking_passes, run_rank
from recranker.stages.results import Outputs, results_and_report, study_report
from recranker.stages.retrieval import collect_metrics, load_backbone, load_candidates, run_retrieval
from recranker.stages.sample import run_sample
from recranker.stages.split import prepare_split, split_stats
from recranker.stages.tune import check_model, run_tune, tune_stage

__all__ = [
    "ModelCache", "Pass", "model_folder", "collect_metrics", "evaluation_population", "full_hint_models", "llm_candidates", "load_backbone",
    "load_candidates", "prepare_split", "rank_stage", "ranking_passes", "run_prompts", "run_rank",
    "run_retrieval", "run_sample", "run_study", "run_tune", "split_stats", "study_report", "tune_stage",
]


@writes_run
def run_study(cfg: StudyConfig, *, report: bool = True, progress: bool = True) -> StudyResults | None:
    """The whole study, stage by stage (each skipped when done): split, backbones, instruction
    data, tuning, LLM ranking of every backbone's candidates by every system, then (with
    `report`) results and report. Returns the results summary (None without `report`)."""
    if cfg.ranking.model is not None:
        check_model(cfg.ranking.model, "ranking.model")
    split = prepare_split(cfg)
    for model in cfg.retrieval.models:
        run_retrieval(cfg, model, split=split, progress=progress)
    if cfg.ranking.model is None:
        run_tune(cfg, progress=progress)
    models = ModelCache()
    outputs: Outputs = {}
    for pass_ in ranking_passes(cfg):
        outputs[pass_] = run_rank(cfg, *pass_, split=split, models=models, progress=progress)
    if not report:
        return None
    return results_and_report(cfg, split, outputs)[0]
