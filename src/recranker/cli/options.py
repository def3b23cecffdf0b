"""What the command line's options mean: the flags every study command shares, and the study
config they make (`--config` with every flag applied as an override)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from recranker.errors import RecrankerError


def study_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="study config (YAML)")
    parser.add_argument("--name", help="run name (folder under --runs-dir)")
    parser.add_argument("--runs-dir", type=Path, help="parent folder of runs")
    parser.add_argument("--format", help="data format: ml-100k, ml-1m, bookcrossing, amazon, recbole, csv, "
                        "planted (generated control data)")
    parser.add_argument("--path", type=Path, help="data file or folder")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override any config key, e.g. --set retrieval.candidates=20 (repeatable)",
    )
    wait_flag(parser)


def wait_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="when another process is writing this run, wait for it instead of failing")


def instruction_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instructions", type=int, help="sampled user instances N (instructions per task)")
    parser.add_argument("--strategy", choices=["adaptive", "uniform", "importance", "clustering"],
                        help="user sampling strategy")


def ranking_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rank-model", help="rank with this LLM (untuned) instead of the run's tuned model")
    parser.add_argument("--test-users", type=int, help="evaluate a seeded sample of N test users")
    parser.add_argument("--test-covered", type=int, metavar="N", help="per backbone, evaluate the smallest seeded "
                        "sample of test users with N covered ones (replaces the config's test_users)")
    parser.add_argument("--listwise", choices=["logits", "generate"], help="listwise order the hybrid uses")
    parser.add_argument("--weights", help="hybrid weights a1,a2,a3 (sum 1); they are then not tuned")
    parser.add_argument("--workers", type=int, help="rank over N Ray workers (the same outputs as one process)")


def study_config(args: argparse.Namespace):
    """The config from --config (or the positional CONFIG of `run`) with the flags applied; from
    here to the end of the command this process holds the run directory's lock."""
    cfg = _configured(args)
    hold_run(args, cfg)
    return cfg


def hold_run(args: argparse.Namespace, cfg) -> None:
    """Hold the run directory's lock for the rest of the command (in a distributed launch, only
    rank 0: the other ranks only train, writing nothing)."""
    from recranker.artifacts import run_lock
    from recranker.stages.base import process_rank

    held = getattr(args, "held", None)
    if held is not None and process_rank() == 0:
        held.enter_context(run_lock(cfg.run_dir, wait=getattr(args, "wait", False)))


def _configured(args: argparse.Namespace):
    from recranker.config import StudyConfig, load_config, override

    path = getattr(args, "config_file", None) or args.config
    cfg = load_config(path) if path else StudyConfig()
    changes: dict[str, object] = {}
    for flag, key in (("name", "name"), ("runs_dir", "runs_dir"), ("format", "data.format"), ("path", "data.path")):
        value = getattr(args, flag, None)
        if value is not None:
            changes[key] = str(value)
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            changes[key] = _flag_value(flag, value)
    for flag, settings in SWITCHES.items():
        if getattr(args, flag, False):
            changes.update(settings)
    if getattr(args, "test_covered", None) is not None:
        changes.update({"ranking.test_covered": args.test_covered, "ranking.test_users": args.test_users})
    weights = getattr(args, "weights", None)
    if weights is not None:
        try:
            changes["ranking.weights"] = [float(w) for w in weights.split(",")]
        except ValueError:
            raise RecrankerError(f"--weights {weights!r}: expected three numbers a1,a2,a3") from None
        changes["ranking.tune_weights"] = False
    changes.update(set_changes(args.set))
    return override(cfg, changes) if changes else cfg


def set_changes(items: list[str]) -> dict[str, object]:
    """The config changes of `--set KEY=VALUE` flags (values read as YAML)."""
    changes: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise RecrankerError(f"--set {item!r}: expected KEY=VALUE")
        changes[key.strip()] = yaml.safe_load(value)
    return changes


#: value flag (argparse dest) -> config key
FLAGS = {
    "instructions": "sampling.instructions", "strategy": "sampling.strategy", "tasks": "prompts.tasks",
    "tokenizer": "prompts.tokenizer", "variant": "tuning.variant", "tune_model": "tuning.model",
    "tune_tasks": "tuning.tasks", "limit": "tuning.limit", "epochs": "tuning.epochs",
    "max_steps": "tuning.max_steps", "batch_size": "tuning.batch_size", "lr": "tuning.learning_rate",
    "rank_model": "ranking.model", "test_users": "ranking.test_users", "listwise": "ranking.listwise",
    "workers": "ranking.workers",
}


#: on/off flag -> the config values it sets
SWITCHES = {
    "no_hints": {"prompts.hints.enabled": False},
    "no_cross_fit": {"prompts.hints.cross_fit": False},
    "full": {"tuning.method": "full"},
    "merge": {"tuning.merge": True},
    "no_soft_lambda": {"tuning.alro.soft_lambda": False},
    "no_permutation": {"tuning.alro.permutation": False},
    "no_alro": {"tuning.alro.soft_lambda": False, "tuning.alro.permutation": False},
}


def _flag_value(flag: str, value: object) -> object:
    if flag in ("tasks", "tune_tasks"):
        return [t.strip() for t in str(value).split(",") if t.strip()]
    if flag == "tokenizer" and str(value).lower() in ("none", "null", ""):
        return None
    return value
