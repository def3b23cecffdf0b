"""The `recranker` command: fetch, data, retrieve, evaluate, sample, prompts, tune, rank, report, run, demo,
serve.

Every subcommand reads the study config (`--config FILE`, defaults otherwise); flags override it,
and holds the run directory's lock while it works (`--wait` queues behind another process instead of
failing). Errors on bad input end the command with one clear message and exit status 2; Ctrl-C
(130) and SIGTERM (143) keep the finished stages and say so.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path


from recranker.cli.options import hold_run, instruction_flags, ranking_flags, study_config, study_flags, wait_flag
from recranker.cli.serve import serve_command
from recranker.errors import RecrankerError

log = logging.getLogger("recranker")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    restore = _raise_on_sigterm()
    try:
        with contextlib.ExitStack() as held:
            args.held = held  # study_config enters the run directory's lock here
            return int(args.func(args) or 0)
    except RecrankerError as exc:
        print(f"recranker: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("recranker: interrupted; finished stages are kept, run again to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except OSError as exc:  # the file system's refusal (permissions, a full disk): one line unless -v
        if args.verbose:
            raise
        print(f"recranker: error: {exc} (-v shows where)", file=sys.stderr)
        return 1
    finally:
        restore()


class Terminated(KeyboardInterrupt):
    """SIGTERM (from `timeout`, `kill` or a scheduler), raised where the program is, so that it
    unwinds exactly as on Ctrl-C: temporary files removed, finished stages kept."""


def _raise_on_sigterm():
    """Turn SIGTERM into `Terminated` (main thread only); returns what restores the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="recranker", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _data_commands(sub)
    _instruction_commands(sub)
    _llm_commands(sub)
    serve_command(sub)
    return parser


def _data_commands(sub) -> None:
    """fetch, data, retrieve, evaluate."""
    fetch = sub.add_parser("fetch", help="fetch a default asset into $RECRANKER_HOME")
    from recranker.assets import ASSETS  # light: transformers is imported only when a model loads

    fetch.add_argument("asset", choices=list(ASSETS))
    fetch.add_argument("--force", action="store_true", help="fetch again even if cached")
    fetch.set_defaults(func=cmd_fetch)

    data = sub.add_parser("data", help="load, split and describe the data")
    study_flags(data)
    data.set_defaults(func=cmd_data)

    retrieve = sub.add_parser("retrieve", help="train a backbone, evaluate it, write candidates")
    study_flags(retrieve)
    retrieve.add_argument("--model", action="append", help="backbone (repeatable); default: the config's")
    retrieve.add_argument("--candidates", type=int, help="m, candidates per user")
    retrieve.set_defaults(func=cmd_retrieve)

    evaluate = sub.add_parser("evaluate", help="print the metrics of a run's finished stages")
    study_flags(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def _instruction_commands(sub) -> None:
    """sample, prompts, tune."""
    sample = sub.add_parser("sample", help="sample the users of the instruction data (adaptive sampling)")
    study_flags(sample)
    instruction_flags(sample)
    sample.set_defaults(func=cmd_sample)

    prompts = sub.add_parser("prompts", help="build the instruction data: one JSONL file per task")
    study_flags(prompts)
    instruction_flags(prompts)
    prompts.add_argument("--tasks", help="comma-separated subset of pointwise,pairwise,listwise")
    prompts.add_argument("--tokenizer", help="tokenizer for budgets and lengths: smollm2-135m, a folder, an id, or none")
    prompts.add_argument("--no-hints", action="store_true", help="leave the hints out of the prompts")
    prompts.add_argument("--no-cross-fit", action="store_true", help="training hints from the full models (in-sample)")
    prompts.set_defaults(func=cmd_prompts)

    tune = sub.add_parser("tune", help="instruction-tune the LLM on the run's prompts (LoRA, ALRO losses)")
    study_flags(tune)
    instruction_flags(tune)
    tune.add_argument("--tokenizer", help="tokenizer of the prompts' token budgets (when they are built here)")
    tune.add_argument("--variant", help="name of this tuning under tune/ (default: main)")
    tune.add_argument("--model", dest="tune_model", help="smollm2-135m (default), a model folder, a .gguf file or a Hugging Face id")
    tune.add_argument("--tasks", dest="tune_tasks", help="comma-separated subset of the built tasks to train on")
    tune.add_argument("--limit", type=int, help="use the first N instructions of each task")
    tune.add_argument("--epochs", type=float)
    tune.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    tune.add_argument("--batch-size", type=int)
    tune.add_argument("--lr", type=float, help="learning rate")
    tune.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    tune.add_argument("--no-alro", action="store_true", help="SFT only: no soft lambda, no permutation loss")
    tune.add_argument("--no-soft-lambda", action="store_true", help="leave out the soft lambda loss")
    tune.add_argument("--no-permutation", action="store_true", help="leave out the permutation-sensitive loss")
    tune.add_argument("--merge", action="store_true", help="also export the model with the adapter merged in")
    tune.set_defaults(func=cmd_tune)


def _llm_commands(sub) -> None:
    """rank, report, run, demo."""
    rank = sub.add_parser("rank", help="rank every backbone's candidates with the LLM (tuned, and the baselines)")
    study_flags(rank)
    ranking_flags(rank)
    rank.set_defaults(func=cmd_rank)

    report = sub.add_parser("report", help="evaluate the finished LLM ranking and write the report (Markdown + PNG)")
    study_flags(report)
    ranking_flags(report)
    report.set_defaults(func=cmd_report)

    run = sub.add_parser("run", help="the whole study of a config, stage by stage (resumable), ending with its report")
    run.add_argument("config_file", type=Path, metavar="CONFIG", help="study config (YAML), e.g. configs/ml-100k-cpu.yaml")
    study_flags(run)
    ranking_flags(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="the whole pipeline on ML-100K with the default LLM, sized for a 2-core CPU")
    demo.add_argument("--runs-dir", type=Path, default=Path("runs"))
    demo.add_argument("--name", default="demo", help="run name")
    wait_flag(demo)
    demo.set_defaults(func=cmd_demo)


def cmd_fetch(args: argparse.Namespace) -> int:
    from recranker import assets

    path = assets.fetch(args.asset, force=args.force)
    print(f"{args.asset}: {path} (from {assets.fetched_source(args.asset)})")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from recranker.report import markdown_table
    from recranker.stages import prepare_split, split_stats

    print(markdown_table([split_stats(prepare_split(study_config(args)))]))
    return 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    from recranker.config import override
    from recranker.report import markdown_table, metrics_rows
    from recranker.stages import prepare_split, run_retrieval

    cfg = study_config(args)
    if args.candidates is not None:
        cfg = override(cfg, {"retrieval.candidates": args.candidates})
    models = args.model or list(cfg.retrieval.models)
    split = prepare_split(cfg)
    summaries = [run_retrieval(cfg, model, split=split) for model in models]
    print(markdown_table(metrics_rows(summaries)))
    print(f"\ncandidates written under {cfg.run_dir / 'retrieval'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recranker.report import markdown_table
    from recranker.stages import collect_metrics

    cfg = study_config(args)
    table = collect_metrics(cfg)
    if table.empty:
        raise RecrankerError(f"{cfg.run_dir}: no finished retrieval stage; run `recranker retrieve` first")
    print(markdown_table(table.to_dict("records")))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from recranker.report import markdown_table
    from recranker.stages import run_sample

    cfg = study_config(args)
    _, summary = run_sample(cfg)
    print(markdown_table([summary]))
    print(f"\nsample written to {cfg.run_dir / 'sample'}")
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from recranker.report import markdown_table, prompt_rows
    from recranker.stages import run_prompts

    cfg = study_config(args)
    started = time.perf_counter()
    stats = run_prompts(cfg)
    print(markdown_table(prompt_rows(stats)))
    tokens = "tokens" if stats["exact_tokens"] else "tokens (estimated: no tokenizer)"
    print(f"\n{tokens}; prompts written under {cfg.run_dir / 'prompts'} in {time.perf_counter() - started:.0f} s")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from recranker.report import markdown_table
    from recranker.stages import run_tune

    from recranker.stages.base import process_rank

    cfg = study_config(args)
    summary = run_tune(cfg)
    if process_rank() > 0:  # a distributed launch (torchrun): rank 0 reports
        return 0
    rows = [{"task": task, **counts} for task, counts in summary["tasks"].items()]
    print(markdown_table(rows))
    print(f"\n{summary['steps']} steps over {summary['examples']} examples in {summary['seconds']:.0f} s, "
          f"{summary['tokens_per_s']:.0f} tokens/s, final training loss {summary['train_loss']:.4f}, "
          f"{summary['trainable_parameters']:,} trainable parameters"
          + (f", {summary['processes']} processes" if summary.get("processes", 1) > 1 else ""))
    print(f"adapter, log and loss curve written to {cfg.run_dir / 'tune' / cfg.tuning.variant}")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from recranker.stages import run_study

    cfg = study_config(args)
    run_study(cfg, report=False)
    print(f"LLM outputs written under {cfg.run_dir / 'rank'}; `recranker report` evaluates them")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from recranker.stages import study_report

    cfg = study_config(args)
    results, path = study_report(cfg)
    print_results(results)
    print(f"\nreport: {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from recranker.stages import run_study

    cfg = study_config(args)
    started = time.perf_counter()
    results = run_study(cfg)
    print_results(results)
    print(f"\nstudy finished in {time.perf_counter() - started:.0f} s; report: {cfg.run_dir / 'report' / 'report.md'}")
    return 0


def print_results(results, systems: tuple[str, ...] | None = None) -> None:
    """The population table of each backbone of `results` (a `StudyResults`): all systems, or
    those named."""
    from recranker.report import markdown_table, system_rows

    for backbone, summary in results.backbones.items():
        rows = [r for r in system_rows(summary, results.measures) if systems is None or r["system"] in systems]
        print(f"\n{backbone}: {summary.users} test users, {summary.covered} with the target among the candidates")
        print(markdown_table(rows))


def cmd_demo(args: argparse.Namespace) -> int:
    from recranker import assets
    from recranker.config import demo_config
    from recranker.report import markdown_table
    from recranker.stages import prepare_split, run_study

    started = time.perf_counter()
    assets.fetch("ml-100k")
    assets.fetch("smollm2-135m")
    cfg = demo_config(args.runs_dir, args.name)
    hold_run(args, cfg)
    print(markdown_table([prepare_split(cfg).dataset.stats()]))
    results = run_study(cfg)
    print_results(results)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; report: {cfg.run_dir / 'report' / 'report.md'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
