"""The tuning stage: instruction-tune the LLM on the run's prompts (`recranker.tuning`).

    tune/<variant>/   adapter/ (or model/), base_model.txt, log.json, loss_curve.png, summary.json,
                      config.yaml; checkpoints/ while it runs (resumed)
"""

from __future__ import annotations

import logging
from pathlib import Path

from recranker import assets
from recranker.artifacts import Stage, atomic_write, fingerprint, read_json, write_json
from recranker.config import StudyConfig
from recranker.errors import DataError
from recranker.stages.base import model_signature, peak_rss_mib, process_rank, writes_run
from recranker.stages.prompts import prompts_stage, run_prompts

log = logging.getLogger(__name__)


def tune_stage(cfg: StudyConfig) -> Stage:
    """The tuning stage of variant `tuning.variant` (inputs: tuning settings, with mixed precision as
    resolved on this machine, and the instruction data)."""
    from recranker.tuning.model import mixed_precision

    return Stage(cfg.run_dir, f"tune/{cfg.tuning.variant}", inputs=fingerprint(
        cfg.tuning, mixed_precision(cfg.tuning), prompts_stage(cfg).inputs, model_signature(cfg.tuning.model)))


def load_examples(cfg: StudyConfig, tokenizer) -> tuple[list[dict], dict]:
    """The encoded training examples of the tuned tasks (the first `tuning.limit` of each
    file) and per-task counts."""
    from recranker.tuning.data import encode_file

    folder, tcfg = prompts_stage(cfg).path, cfg.tuning
    examples, counts = [], {}
    for task in tcfg.tasks or cfg.prompts.tasks:
        encoded, dropped = encode_file(folder / f"{task}.jsonl", tokenizer, ranking=tcfg.alro.active,
                                       limit=tcfg.limit, max_length=tcfg.max_length)
        if dropped:
            log.warning("tune: %d %s examples longer than max_length=%d left out", dropped, task, tcfg.max_length)
        examples += encoded
        counts[task] = {"examples": len(encoded), "dropped": dropped,
                        "with_ranking_terms": sum("rank" in e for e in encoded),
                        "with_second_view": sum("view" in e for e in encoded)}
    return examples, counts


@writes_run
def run_tune(cfg: StudyConfig, *, progress: bool = True) -> dict:
    """Tune the LLM on the run's instruction data (`recranker.tuning`), or read the finished
    stage's summary; an interrupted run with the same inputs resumes from its last checkpoint."""
    from recranker.tuning.model import load_causal_lm
    from recranker.tuning.tune import tune

    stage = tune_stage(cfg)
    if stage.done():
        log.info("tune: done, reading %s", stage.path)
        return read_json(stage.path / "summary.json")
    check_model(cfg.tuning.model, "tuning.model")  # before building prompts or fitting anything
    main = process_rank() == 0
    if main:
        run_prompts(cfg, progress=progress)
    elif not prompts_stage(cfg).done():
        raise DataError(prompts_stage(cfg).path, "a distributed tuning run needs the finished prompts stage: run "
                        "`recranker prompts` first")
    tokenizer, model = load_causal_lm(cfg.tuning.model, cfg.tuning.dtype)
    examples, counts = load_examples(cfg, tokenizer)
    if not examples:
        raise DataError(prompts_stage(cfg).path, f"no training examples: the instruction files are empty or every "
                        f"conversation is longer than tuning.max_length={cfg.tuning.max_length}")
    folder = stage.path
    resumed = stage.resume_or_start() if main else (folder / "checkpoints").is_dir()
    if main:
        with atomic_write(folder / "config.yaml") as fh:
            fh.write(cfg.to_yaml())
    summary = tune(cfg.tuning, tokenizer, model, examples, folder, base_model=portable_model_spec(cfg.tuning.model),
                   progress=progress and main)
    summary.update(tasks=counts, resumed=resumed, peak_rss_mib=peak_rss_mib(), model=cfg.tuning.model)
    if main:
        write_json(folder / "summary.json", summary)
        stage.finish({"seconds": summary["seconds"]})
    return summary


def check_model(spec: str, key: str) -> None:
    """A `FetchError` naming config key `key` when model `spec` is a local path that does not
    exist or the default model is not fetched (a Hugging Face id is checked when it loads)."""
    try:
        assets.model_path(spec)
    except assets.FetchError as exc:
        raise assets.FetchError(f"{key}: {exc}") from None


def portable_model_spec(spec: str) -> str:
    """`spec` as it can be loaded from any working directory (a local path made absolute)."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec
