"""The stages of a study, each writing its artefacts into the run directory (DESIGN section 9).

    split/                 dataset.json, interactions.npz, split.npz, stats.json
    retrieval/<model>/     model.pt, log.json, metrics.json, per_user_{valid,test}.csv,
                           candidates_{valid,test}.npz
    sample/                users.npz (sampled user codes, draw order), summary.json
    hints/<model>/         fold<f>.pt: the hint model fitted without training fold f
    prompts/               <task>.jsonl (chat messages + metadata), stats.json
    tune/<variant>/        adapter/ (or model/), base_model.txt, log.json, loss_curve.png,
                           summary.json, config.yaml; checkpoints/ while it runs (resumed)
    rank/<backbone>/<system>/<stage>/
                           outputs.npz (the LLM's answers on the candidates), summary.json (time,
                           tokens); part-*.npz while it runs (resumed)
    results/               summary.json, <backbone>/per_user.csv
    report/                report.md, systems.png, position_bias.png

A stage is skipped when its marker says it finished with the same inputs (config section and the
fingerprints of the stages it reads); otherwise it runs again and overwrites its folder's files.
Every public `run_*` (and `prepare_split`, `study_report`) holds the run directory's lock while it
works (`artifacts.run_lock`): a second process on the same run gets a `RunInUseError`.
"""

from __future__ import annotations

import functools
import logging
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from recranker import assets
from recranker.candidates import TrainingPools
from recranker.hints import HintModels, fit_fold_models, hint_quality
from recranker.prompts.export import length_summary, token_lengths, write_jsonl
from recranker.prompts.instructions import InstructionBuilder
from recranker.prompts.render import PromptRenderer
from recranker.prompts.templates import load_templates
from recranker.prompts.text import TokenCounter
from recranker.sampling import sample_summary, sample_users
from recranker.artifacts import Stage, atomic_write, fingerprint, read_json, run_lock, write_json
from recranker.config import DataConfig, StudyConfig
from recranker.errors import DataError
from recranker.data.dataset import Dataset, Feedback
from recranker.metrics import covered, per_user, single_target_gains, summarize
from recranker.retrieval import load_retriever, make_retriever
from recranker.split import STAGES, Split, check_leakage, leave_one_out
from recranker.types import Rankings

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable)


def writes_run(func: F) -> F:
    """Run `func(cfg, ...)` holding the lock of `cfg.run_dir` (re-entrant: nested calls share it)."""
    @functools.wraps(func)
    def locked(cfg: StudyConfig, *args, **kwargs):
        with run_lock(cfg.run_dir):
            return func(cfg, *args, **kwargs)
    return locked  # type: ignore[return-value]


def data_path(cfg: DataConfig) -> Path:
    """The configured path, or the fetched default copy of ML-100K."""
    if cfg.path is not None:
        return Path(cfg.path)
    if cfg.format != "ml-100k":
        raise assets.FetchError(f"data.path is required for format {cfg.format!r}")
    return assets.require("ml-100k")


def data_files(cfg: DataConfig) -> dict[str, Path]:
    """The files (or folders) the configured loader reads, by config key: `data.path` (or the
    fetched default copy), and `data.items_path` / `data.meta_path` where the format reads them."""
    files = {"data.path": data_path(cfg)}
    if cfg.format == "csv" and cfg.items_path is not None:
        files["data.items_path"] = Path(cfg.items_path)
    if cfg.format == "amazon" and cfg.meta_path is not None:
        files["data.meta_path"] = Path(cfg.meta_path)
    return files


def load_data(cfg: DataConfig) -> Dataset:
    """Load the configured dataset."""
    from recranker.data.registry import load_dataset

    files = data_files(cfg)
    options: dict[str, object] = {
        "feedback": Feedback(liked_min=cfg.liked_min, disliked_max=cfg.disliked_max)
    }
    if cfg.format == "csv":
        options.update(items_path=files.get("data.items_path"), implicit=cfg.implicit)
    if cfg.format == "amazon":
        options["meta_path"] = files.get("data.meta_path")
    if cfg.format == "recbole" and cfg.implicit:
        options["implicit"] = True
    return load_dataset(cfg.format, files["data.path"], **options)


def input_signature(path: Path, key: str) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of the file `path` or of every file under the folder `path`, so that a
    stage reading it reruns when any of them changes; a `DataError` naming `key` when it is missing."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"no such file or folder ({key})")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def model_signature(spec: str | None) -> list:
    """`input_signature` of a model given as a local file or folder; empty for the fetched default
    (verified by its checksum) and for a Hugging Face id."""
    if spec is None or spec in (assets.DEFAULT_MODEL, "default"):
        return []
    path = Path(spec).expanduser()
    return input_signature(path, spec) if path.exists() else []


def _nonempty(signature: list) -> list:
    """`[signature]` when it lists files, else nothing (so stages without local files keep the
    fingerprints they had before local files were signed)."""
    return [signature] if signature else []


#: version of the split's layout and order: a change rebuilds earlier runs' splits (2: timestamp ties
#: broken by item id, not file order, so the split is a function of the log's content)
SPLIT_FORMAT = 2


def split_stage(cfg: StudyConfig) -> Stage:
    """The split stage of `cfg`'s run (its inputs: data config and every file the loader reads)."""
    signature = [entry for key, path in data_files(cfg.data).items() for entry in input_signature(path, key)]
    return Stage(cfg.run_dir, "split", inputs=fingerprint(cfg.data, signature, SPLIT_FORMAT))


@writes_run
def prepare_split(cfg: StudyConfig) -> Split:
    """Load, split and leakage-check the data, or read the finished split."""
    stage = split_stage(cfg)
    if stage.done():
        log.info("split: done, reading %s", stage.path)
        return Split.load(str(stage.path))
    dataset = load_data(cfg.data)
    split = leave_one_out(dataset, source=str(data_files(cfg.data)["data.path"]))
    check_leakage(split)
    folder = stage.start()
    split.save(str(folder))
    write_json(folder / "stats.json", split_stats(split))
    stage.finish({"users": len(split.users)})
    return split


def split_stats(split: Split) -> dict[str, float | int | str]:
    """The dataset's statistics with the split's user and training-interaction counts."""
    return {**split.dataset.stats(), "split_users": len(split.users), "train_interactions": len(split.train)}


def retrieval_stage(cfg: StudyConfig, model: str) -> Stage:
    """The retrieval stage of backbone `model` (inputs: its settings, m, cutoffs, the split)."""
    inputs = fingerprint(
        model, cfg.retrieval.model(model), cfg.retrieval.candidates, cfg.evaluation.ks, split_stage(cfg).inputs
    )
    return Stage(cfg.run_dir, f"retrieval/{model}", inputs=inputs)


@writes_run
def run_retrieval(
    cfg: StudyConfig, model: str, *, split: Split | None = None, progress: bool = True
) -> dict:
    """Train backbone `model`, evaluate it on the full ranking, write its candidates.

    `split` is `prepare_split(cfg)`'s result when the caller already has it. Returns the metrics
    summary (also in metrics.json).
    """
    if split is None:
        split = prepare_split(cfg)
    stage = retrieval_stage(cfg, model)
    if stage.done():
        log.info("retrieval/%s: done, reading %s", model, stage.path)
        return _in_measure_order(read_json(stage.path / "metrics.json"), cfg)
    folder = stage.start()
    retriever = make_retriever(model, cfg.retrieval.model(model))
    started = time.perf_counter()
    retriever.fit(split, progress=progress)
    seconds = time.perf_counter() - started
    retriever.save(folder / "model.pt")
    write_json(folder / "log.json", retriever.log)
    summary = evaluate_retriever(retriever, split, cfg, folder)
    summary.update(model=model, train_seconds=seconds, peak_rss_mib=peak_rss_mib())
    write_json(folder / "metrics.json", summary)
    stage.finish({"train_seconds": seconds})
    return summary


def evaluate_retriever(retriever, split: Split, cfg: StudyConfig, folder: Path) -> dict:
    """Full-ranking metrics at both stages and the top-m candidates, written into `folder`."""
    which = retrieval_measures(cfg)
    m = cfg.retrieval.candidates
    summary: dict = {"candidates": m}
    for stage_name in STAGES:
        gains = single_target_gains(split.users, split.target_items(stage_name))
        ranked = retriever.top_m(split.users, max(max(cfg.evaluation.ks), m), stage_name)
        table = per_user(ranked, gains, which + [f"HR@{m}"])
        _write_csv(folder / f"per_user_{stage_name}.csv", table)
        ranked.truncate(m).save(folder / f"candidates_{stage_name}.npz")
        means = summarize(table)
        summary[stage_name] = {k: v for k, v in means.items() if k in which}
        summary[stage_name][f"candidate_recall@{m}"] = means[f"HR@{m}"]
    # RecBole's protocol on a liked-only log excludes only liked training items: kept for comparison
    liked_only = retriever.evaluate(split, "test", ["HR@10", "NDCG@10"], exclude="liked")
    summary["test_exclude_liked_only"] = summarize(liked_only)
    return summary


def retrieval_measures(cfg: StudyConfig) -> list[str]:
    """The measures of a backbone's full ranking, in report order: HR@k then NDCG@k, k ascending."""
    return [f"{name}@{k}" for name in ("HR", "NDCG") for k in cfg.evaluation.ks]


def _in_measure_order(summary: dict, cfg: StudyConfig) -> dict:
    """`summary` read back from metrics.json (whose keys JSON sorted) with each stage's measures in
    report order again."""
    which = retrieval_measures(cfg)
    for stage_name in STAGES:
        stored = summary[stage_name]
        summary[stage_name] = {**{k: stored[k] for k in which if k in stored},
                               **{k: v for k, v in stored.items() if k not in which}}
    return summary


def load_candidates(cfg: StudyConfig, model: str, stage: str) -> Rankings:
    """The top-m candidates a finished retrieval stage wrote."""
    folder = retrieval_stage(cfg, model).path
    return Rankings.load(folder / f"candidates_{stage}.npz")


def load_backbone(cfg: StudyConfig, model: str, split: Split | None = None):
    """The trained backbone `model` of a finished retrieval stage (`split`: the run's split, when
    the caller already has it)."""
    split = prepare_split(cfg) if split is None else split
    return load_retriever(retrieval_stage(cfg, model).path / "model.pt", split)


def collect_metrics(cfg: StudyConfig) -> pd.DataFrame:
    """One row per finished retrieval stage of the run: test and valid metrics, time."""
    rows = []
    for model in sorted((cfg.run_dir / "retrieval").glob("*/metrics.json")):
        summary = read_json(model)
        row = {"model": summary["model"]}
        row.update({f"test {k}": v for k, v in summary["test"].items()})
        row["valid NDCG@10"] = summary["valid"].get("NDCG@10")
        row["train s"] = summary["train_seconds"]
        rows.append(row)
    return pd.DataFrame(rows)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_write(path) as fh:
        table.to_csv(fh, float_format="%.6g")


# ------------------------------------------------------------------------------ instruction data
#: the backbone whose user embeddings the clustering-based sampling clusters
EMBEDDING_MODEL = "lightgcn"


def sample_stage(cfg: StudyConfig) -> Stage:
    """The user-sampling stage (inputs: sampling settings, the split and, when clustering, LightGCN)."""
    upstream = split_stage(cfg).inputs
    if cfg.sampling.uses_embeddings:
        upstream = retrieval_stage(cfg, EMBEDDING_MODEL).inputs
    return Stage(cfg.run_dir, "sample", inputs=fingerprint(cfg.sampling, upstream))


@writes_run
def run_sample(cfg: StudyConfig, *, split: Split | None = None, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Sample the users of the instruction data (`recranker.sampling`), or read the finished
    sample; returns the user codes (draw order) and the summary."""
    split = prepare_split(cfg) if split is None else split
    stage = sample_stage(cfg)
    if stage.done():
        log.info("sample: done, reading %s", stage.path)
        with np.load(stage.path / "users.npz") as z:
            return z["users"], read_json(stage.path / "summary.json")
    embeddings = None
    if cfg.sampling.uses_embeddings:
        embeddings = fitted_backbone(cfg, EMBEDDING_MODEL, split, progress=progress).user_embeddings()
    users = sample_users(split, cfg.sampling, embeddings)
    folder = stage.start()
    with atomic_write(folder / "users.npz", binary=True) as fh:
        np.savez(fh, users=users)
    summary = {"strategy": cfg.sampling.strategy, **sample_summary(users, split)}
    write_json(folder / "summary.json", summary)
    stage.finish()
    return users, summary


def fitted_backbone(cfg: StudyConfig, model: str, split: Split, *, progress: bool = True):
    """Backbone `model` fitted on the whole training set: its retrieval stage, run if needed."""
    run_retrieval(cfg, model, split=split, progress=progress)
    return load_backbone(cfg, model, split)


def hints_stage(cfg: StudyConfig) -> Stage:
    """The cross-fitting stage: one hint model per fold (inputs: which models and their settings,
    the folds and their seed, the split; not the switches that only decide whether the fold
    models are used, so toggling those never refits them)."""
    hints, prompts = cfg.prompts.hints, cfg.prompts
    models = {name: cfg.retrieval.model(name) for name in (hints.rating_model, hints.ranking_model)}
    return Stage(cfg.run_dir, "hints", inputs=fingerprint(
        [hints.rating_model, hints.ranking_model], prompts.folds, prompts.seed, models, split_stage(cfg).inputs))


def prepare_hints(cfg: StudyConfig, split: Split, pools: TrainingPools, *, progress: bool = True) -> HintModels | None:
    """The hint models: full ones from the retrieval stages and, when cross-fitting, one per fold
    (fitted once, then read back). None when no prompt needs them."""
    settings = cfg.prompts.hints
    if not settings.enabled and cfg.prompts.shift_positions:
        return None
    names = (settings.rating_model, settings.ranking_model)
    full = full_hint_models(cfg, split, progress=progress)
    if not settings.cross_fit:
        return full
    stage = hints_stage(cfg)
    per_fold = {}
    if stage.done():
        log.info("hints: done, reading %s", stage.path)
        for name in dict.fromkeys(names):
            per_fold[name] = [load_retriever(stage.path / name / f"fold{f}.pt", split.holding_out(pools.fold_rows(f)))
                              for f in range(pools.k)]
    else:
        folder = stage.start()
        started = time.perf_counter()
        for name in dict.fromkeys(names):
            per_fold[name] = fit_fold_models(split, pools, name, cfg.retrieval.model(name), progress=progress)
            for f, model in enumerate(per_fold[name]):
                model.save(folder / name / f"fold{f}.pt")
        stage.finish({"seconds": time.perf_counter() - started})
    return HintModels(full.rating, full.ranking, per_fold[names[0]], per_fold[names[1]])


def full_hint_models(cfg: StudyConfig, split: Split, *, progress: bool = True) -> HintModels:
    """The hint models fitted on the whole training set (their retrieval stages, run if needed):
    the hints of inference prompts."""
    names = (cfg.prompts.hints.rating_model, cfg.prompts.hints.ranking_model)
    return HintModels(*[fitted_backbone(cfg, name, split, progress=progress) for name in names])


def prompt_renderer(cfg: StudyConfig, split: Split, tokenizer, tasks) -> PromptRenderer:
    """The renderer of `tasks`' prompts with the configured templates and history budget
    (token counts by `tokenizer`, estimated when None)."""
    pcfg = cfg.prompts
    templates = load_templates(pcfg.resolved_domain(cfg.data.format), pcfg.templates_dir, tuple(tasks))
    return PromptRenderer(split.dataset, templates, counter=TokenCounter(tokenizer),
                          history_tokens=pcfg.history_tokens, history_items=pcfg.history_items,
                          title_chars=pcfg.title_chars)


#: version of the instruction records' layout: a change rebuilds earlier runs' prompts (3: one history for
#: every task; 2: listwise
#: records carry the shuffled second view)
PROMPTS_FORMAT = 3


def template_texts(cfg: StudyConfig, tasks) -> list[str]:
    """The text of each template file `tasks` use (packaged or the configured folder), so that an
    edited template reruns the stages that render prompts."""
    from recranker.prompts.templates import template_path

    domain = cfg.prompts.resolved_domain(cfg.data.format)
    paths = [template_path(task, domain, cfg.prompts.templates_dir) for task in tasks]
    return [p.read_text(encoding="utf-8") if p.exists() else str(p) for p in paths]


def prompts_stage(cfg: StudyConfig) -> Stage:
    """The instruction-data stage (inputs: prompt settings and templates, the sample, the hint models)."""
    hints = cfg.prompts.hints
    upstream = [retrieval_stage(cfg, name).inputs for name in (hints.rating_model, hints.ranking_model)]
    return Stage(cfg.run_dir, "prompts", inputs=fingerprint(
        cfg.prompts, template_texts(cfg, cfg.prompts.tasks), sample_stage(cfg).inputs, hints_stage(cfg).inputs,
        upstream, PROMPTS_FORMAT, *_nonempty(model_signature(cfg.prompts.tokenizer))))


@writes_run
def run_prompts(cfg: StudyConfig, *, split: Split | None = None, progress: bool = True) -> dict:
    """Build the instruction data of every configured task (`recranker.prompts`) into
    prompts/<task>.jsonl, or read the finished stage's statistics."""
    stage = prompts_stage(cfg)
    if stage.done():
        log.info("prompts: done, reading %s", stage.path)
        return read_json(stage.path / "stats.json")
    split = prepare_split(cfg) if split is None else split
    pcfg = cfg.prompts  # tokenizer and templates first: bad ones fail before any model is fitted
    tokenizer = assets.load_tokenizer(pcfg.tokenizer) if pcfg.tokenizer else None
    renderer = prompt_renderer(cfg, split, tokenizer, pcfg.tasks)
    users, _ = run_sample(cfg, split=split, progress=progress)
    pools = TrainingPools(split, pcfg.folds, pcfg.seed)
    hints = prepare_hints(cfg, split, pools, progress=progress)
    builder = InstructionBuilder(pools, renderer, hints, pcfg)
    folder = stage.start()
    stats: dict = {"tokenizer": pcfg.tokenizer, "exact_tokens": tokenizer is not None, "tasks": {}}
    for task in pcfg.tasks:
        started = time.perf_counter()
        records = builder.build(task, users, progress=progress)
        write_jsonl(folder / f"{task}.jsonl", records)
        seconds = time.perf_counter() - started
        stats["tasks"][task] = {**length_summary(*token_lengths(records, tokenizer)), "seconds": seconds,
                                "hint_quality": hint_quality(records)}
    write_json(folder / "stats.json", stats)
    stage.finish()
    return stats


# ------------------------------------------------------------------------------ instruction tuning
def tune_stage(cfg: StudyConfig) -> Stage:
    """The tuning stage of variant `tuning.variant` (inputs: tuning settings, the instruction data)."""
    return Stage(cfg.run_dir, f"tune/{cfg.tuning.variant}", inputs=fingerprint(
        cfg.tuning, prompts_stage(cfg).inputs, *_nonempty(model_signature(cfg.tuning.model))))


def load_examples(cfg: StudyConfig, tokenizer) -> tuple[list[dict], dict]:
    """The encoded training examples of the tuned tasks (the first `tuning.instructions` of each
    file) and per-task counts."""
    from recranker.tuning.data import encode_file

    folder, tcfg = prompts_stage(cfg).path, cfg.tuning
    examples, counts = [], {}
    for task in tcfg.tasks or cfg.prompts.tasks:
        encoded, dropped = encode_file(folder / f"{task}.jsonl", tokenizer, ranking=tcfg.alro.active,
                                       limit=tcfg.instructions, max_length=tcfg.max_length)
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
    run_prompts(cfg, progress=progress)
    tokenizer, model = load_causal_lm(cfg.tuning.model, cfg.tuning.dtype)
    examples, counts = load_examples(cfg, tokenizer)
    if not examples:
        raise DataError(prompts_stage(cfg).path, f"no training examples: the instruction files are empty or every "
                        f"conversation is longer than tuning.max_length={cfg.tuning.max_length}")
    folder = stage.path
    resumed = stage.resume_or_start()
    with atomic_write(folder / "config.yaml") as fh:
        fh.write(cfg.to_yaml())
    summary = tune(cfg.tuning, tokenizer, model, examples, folder, base_model=portable_model_spec(cfg.tuning.model),
                   progress=progress)
    summary.update(tasks=counts, resumed=resumed, peak_rss_mib=peak_rss_mib(), model=cfg.tuning.model)
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


# ------------------------------------------------------------------------------ LLM ranking
#: version of the ranking outputs' layout and prompts: a change reruns earlier runs' ranking
RANKING_FORMAT = 1


def ranking_systems(cfg: StudyConfig) -> list[str]:
    """The LLM passes the config asks for (tuned first, then no_hints and zero_shot baselines)."""
    return ["tuned"] + [s for s in ("no_hints", "zero_shot") if s in cfg.ranking.baselines]


def ranking_model_inputs(cfg: StudyConfig, system: str) -> str:
    """What identifies the LLM of `system`: the tune stage's inputs, or the untuned model spec."""
    if cfg.ranking.model is not None:
        return fingerprint("model", cfg.ranking.model, *_nonempty(model_signature(cfg.ranking.model)))
    if system == "zero_shot":
        return fingerprint("model", cfg.tuning.model, *_nonempty(model_signature(cfg.tuning.model)))
    return tune_stage(cfg).inputs


def rank_stage(cfg: StudyConfig, backbone: str, system: str, stage: str) -> Stage:
    """LLM ranking of `backbone`'s candidates at `stage` by `system` (inputs: the ranking settings
    that change what the LLM is asked, the model, the prompts' settings, the candidates)."""
    r = cfg.ranking
    asked = [cfg.ranked_tasks, r.pairs, r.generate, r.max_new_tokens, r.seed, r.test_users, r.valid_users,
             r.bootstrap if "bootstrapping" in r.baselines else 1, r.constants.listwise_top]
    p = cfg.prompts
    shown = [p.domain, p.templates_dir, p.history_tokens, p.history_items, p.title_chars,
             p.hints.rating_model, p.hints.ranking_model, system != "no_hints" and p.hints.enabled]
    return Stage(cfg.run_dir, f"rank/{backbone}/{system}/{stage}", inputs=fingerprint(
        asked, shown, template_texts(cfg, cfg.ranked_tasks), ranking_model_inputs(cfg, system), retrieval_stage(cfg, backbone).inputs, RANKING_FORMAT))


def evaluated_users(cfg: StudyConfig, split: Split, stage: str) -> np.ndarray:
    """Positions (into `split.users`) of the users evaluated at `stage`: all, or a seeded sample
    of `ranking.test_users` / `ranking.valid_users`, ascending."""
    wanted = cfg.ranking.test_users if stage == "test" else cfg.ranking.valid_users
    n = len(split.users)
    if wanted is None or wanted >= n:
        return np.arange(n)
    rng = np.random.default_rng([cfg.ranking.seed, 7, 0 if stage == "valid" else 1])
    return np.sort(rng.choice(n, size=wanted, replace=False))


def evaluation_population(cfg: StudyConfig, split: Split, backbone: str, stage: str) -> tuple[Rankings, dict]:
    """The evaluated users' candidates from `backbone` at `stage` and their relevance: the stage's
    target or, at test with `evaluation.graded`, the future liked items (a user without any gets a
    placeholder item no list holds, so it scores 0)."""
    candidates = load_candidates(cfg, backbone, stage)
    rows = evaluated_users(cfg, split, stage)
    population = Rankings(candidates.users[rows], candidates.items[rows], candidates.scores[rows])
    if cfg.evaluation.graded and stage == "test":
        from recranker.ranking.results import graded_gains

        gains = graded_gains(split, population.users, split.dataset.feedback.liked_min)
        return population, {u: g or {-1: 1.0} for u, g in gains.items()}
    return population, single_target_gains(population.users, split.target_items(stage)[rows])


def llm_candidates(cfg: StudyConfig, split: Split, backbone: str, stage: str) -> Rankings:
    """The candidates the LLM reorders at `stage`: those of the evaluated users with a relevant item
    among them (`evaluation_population`). For every other user each reordering scores 0, so asking
    the LLM would change no metric."""
    population, gains = evaluation_population(cfg, split, backbone, stage)
    keep = covered(population, gains)
    return Rankings(population.users[keep], population.items[keep], population.scores[keep])


class ModelCache:
    """Loads each LLM of a run once (tuned: the adapter merged into the base for speed)."""

    def __init__(self) -> None:
        self._models: dict[str, tuple] = {}

    def get(self, cfg: StudyConfig, system: str) -> tuple:
        from recranker.tuning.model import load_causal_lm, load_tuned

        key = ranking_model_inputs(cfg, system)
        if key not in self._models:
            self._models.clear()  # one model in memory at a time
            if cfg.ranking.model is not None:
                tokenizer, model = load_causal_lm(cfg.ranking.model, cfg.tuning.dtype)
            elif system == "zero_shot":
                tokenizer, model = load_causal_lm(cfg.tuning.model, cfg.tuning.dtype)
            else:
                run_tune(cfg)
                tokenizer, model = load_tuned(tune_stage(cfg).path, cfg.tuning.dtype)
                if hasattr(model, "merge_and_unload"):
                    model = model.merge_and_unload()
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            if torch_device() != "cpu":
                model = model.to(torch_device())
            self._models[key] = (tokenizer, model.eval())
        return self._models[key]


def torch_device() -> str:
    """cuda when a GPU is visible, else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@writes_run
def run_rank(cfg: StudyConfig, backbone: str, system: str, stage: str, *, split: Split, models: ModelCache,
             progress: bool = True):
    """The LLM's outputs on `backbone`'s candidates (`recranker.ranking.llm`), or the finished
    stage's; an interrupted stage goes on from the chunks of users it saved."""
    from recranker.ranking.backend import TransformersBackend
    from recranker.ranking.llm import LLMRanker, RankerOutputs

    stage_obj = rank_stage(cfg, backbone, system, stage)
    if stage_obj.done():
        log.info("rank/%s/%s/%s: done, reading %s", backbone, system, stage, stage_obj.path)
        return RankerOutputs.load(stage_obj.path / "outputs.npz"), read_json(stage_obj.path / "summary.json")
    candidates = llm_candidates(cfg, split, backbone, stage)
    tokenizer, model = models.get(cfg, system)
    folder = stage_obj.path
    resumed = stage_obj.resume_or_start()
    parts = sorted(folder.glob("part-*.npz")) if resumed else []
    done = [RankerOutputs.load(p) for p in parts]
    seen = set(np.concatenate([d.users for d in done]).tolist()) if done else set()
    todo = np.array([u not in seen for u in candidates.users], dtype=bool)
    renderer = prompt_renderer(cfg, split, tokenizer, cfg.ranked_tasks)
    hints = None
    if system != "no_hints" and cfg.prompts.hints.enabled:
        hints = full_hint_models(cfg, split, progress=progress)
    backend = TransformersBackend(model, tokenizer, batch_tokens=cfg.ranking.batch_tokens,
                                  prefix_tokens=cfg.ranking.prefix_tokens)
    ranker = LLMRanker(backend, renderer, split, hints, cfg.ranking)
    counter = [len(parts)]

    def save(part) -> None:
        part.save(folder / f"part-{counter[0]:05d}.npz")
        counter[0] += 1

    started = time.perf_counter()
    remaining = Rankings(candidates.users[todo], candidates.items[todo], candidates.scores[todo])
    fresh = None
    if todo.any() or not done:  # no covered user at all still gives (empty) outputs
        fresh = ranker.rank(remaining, stage, chunk=cfg.ranking.chunk_users, progress=progress, on_chunk=save)
    seconds = time.perf_counter() - started
    outputs = RankerOutputs.concat(done + ([fresh] if fresh is not None else []))
    order = np.argsort(outputs.users)
    outputs = outputs.select(order)
    outputs.save(folder / "outputs.npz")
    for part in folder.glob("part-*.npz"):
        part.unlink()
    users_now = int(todo.sum())
    summary = {"backbone": backbone, "system": system, "stage": stage, "users": len(outputs),
               "users_this_run": users_now, "seconds": seconds, "resumed": resumed,
               "seconds_per_user": seconds / users_now if users_now else None,
               "usage": backend.usage.as_dict(), "device": torch_device(),
               "tokens_per_user": {k: v / users_now for k, v in backend.usage.as_dict().items()
                                   if k.endswith("tokens")} if users_now else None}
    write_json(folder / "summary.json", summary)
    stage_obj.finish({"seconds": seconds})
    return outputs, summary


@writes_run
def run_study(cfg: StudyConfig, *, report: bool = True, progress: bool = True) -> dict | None:
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
    outputs: dict = {}
    for system, backbone, stage in ranking_passes(cfg):
        outputs[backbone, system, stage] = run_rank(cfg, backbone, system, stage, split=split, models=models,
                                                    progress=progress)
    if not report:
        return None
    return _results_and_report(cfg, split, outputs)[0]


def ranking_passes(cfg: StudyConfig) -> list[tuple[str, str, str]]:
    """(system, backbone, stage) of every LLM pass of the study, in the order they run (one model
    loaded at a time): validation users only where the hybrid's weights are tuned."""
    passes = []
    for system in ranking_systems(cfg):
        for backbone in cfg.retrieval.models:
            stages = ["valid", "test"] if system == "tuned" and cfg.ranking.tune_weights else ["test"]
            passes += [(system, backbone, stage) for stage in stages]
    return passes


@writes_run
def study_report(cfg: StudyConfig) -> tuple[dict, Path]:
    """Results and report from the finished LLM passes (DataError naming the first one missing)."""
    from recranker.ranking.llm import RankerOutputs

    outputs = {}
    for system, backbone, stage in ranking_passes(cfg):
        stage_obj = rank_stage(cfg, backbone, system, stage)
        if not stage_obj.done():
            raise DataError(stage_obj.path, "this LLM pass has not finished with the config's settings; "
                            "run `recranker rank` (or `recranker run`) first")
        outputs[backbone, system, stage] = (RankerOutputs.load(stage_obj.path / "outputs.npz"),
                                            read_json(stage_obj.path / "summary.json"))
    return _results_and_report(cfg, prepare_split(cfg), outputs)


def _results_and_report(cfg: StudyConfig, split: Split, outputs: dict) -> tuple[dict, Path]:
    from recranker.ranking.results import study_results
    from recranker.report import write_report

    results = study_results(cfg, split, outputs)
    return results, write_report(cfg, results)
