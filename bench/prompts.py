"""Benchmark: instruction data for ML-100K at the paper's size (5,000 instructions per task).

1. `recranker prompts` from an empty run directory (LightGCN, biased MF, the cross-fitted fold
   models, adaptive sampling, the prompts), timed; then the prompts stage alone (hint models read
   back), timed: the time to build all prompts.
2. Token lengths per task under the SmolLM2 tokenizer (chat template applied).
3. The hint gap: the same training prompts with in-sample hints (models fitted on all training
   interactions, cross-fitting off) and out-of-fold hints (the default), against the hint models'
   accuracy at test time (the fitted models on each user's unseen later interactions).
4. One example prompt per task and template domain, written to bench/prompt_examples.md.

Writes the section "prompts" of BENCHMARKS.md.

    python bench/prompts.py [--instructions 5000] [--runs-dir runs]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker.artifacts import read_json  # noqa: E402
from recranker.config import StudyConfig  # noqa: E402
from recranker.hints import HintModels, hint_quality  # noqa: E402
from recranker.prompts.export import read_jsonl  # noqa: E402

TASKS = ("pointwise", "pairwise", "listwise")
EXAMPLES = Path(__file__).resolve().parent / "prompt_examples.md"


def cli(*args: str) -> float:
    """Run `recranker ARGS` in its own process; returns the wall time."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recranker.cli.main", *args], check=True)
    return time.perf_counter() - started


def timed_runs(args: argparse.Namespace) -> tuple[float, float]:
    """Wall time from an empty run directory, then of the prompts stage alone (its marker removed,
    so it runs again while every other stage is read back)."""
    run_dir = Path(args.runs_dir) / args.name
    shutil.rmtree(run_dir, ignore_errors=True)
    command = ["prompts", "--name", args.name, "--runs-dir", args.runs_dir, "--instructions", str(args.instructions)]
    scratch = cli(*command)
    (run_dir / "prompts" / "_stage.json").unlink()
    return scratch, cli(*command)


def length_table(stats: dict) -> str:
    head = "| task | instructions | prompt mean | min | p50 | p90 | p99 | max | answer mean | total tokens | build s |"
    lines = [head, "|" + "---|" * 11]
    for task, s in stats["tasks"].items():
        lines.append(
            f"| {task} | {s['instructions']} | {s['prompt_mean']:.0f} | {s['prompt_min']} | {s['prompt_p50']:.0f} | "
            f"{s['prompt_p90']:.0f} | {s['prompt_p99']:.0f} | {s['prompt_max']} | {s['answer_mean']:.1f} | "
            f"{s['total_tokens']:,} | {s['seconds']:.1f} |"
        )
    return "\n".join(lines)


def pointwise_rmse(cfg: StudyConfig, split, users: np.ndarray, hints: HintModels, folds: int) -> float:
    """RMSE of out-of-fold pointwise hints when the rating model is cross-fitted with `folds` folds
    (each fold model sees (folds - 1) / folds of the training interactions)."""
    from recranker.candidates import TrainingPools
    from recranker.hints import fit_fold_models
    from recranker.prompts.instructions import InstructionBuilder
    from recranker.prompts.render import PromptRenderer
    from recranker.prompts.templates import load_templates
    from recranker.prompts.text import TokenCounter

    pools = TrainingPools(split, folds, cfg.prompts.seed)
    name = cfg.prompts.hints.rating_model
    per_fold = fit_fold_models(split, pools, name, cfg.retrieval.model(name), progress=False)
    models = HintModels(hints.rating, hints.ranking, per_fold, [hints.ranking] * folds)
    renderer = PromptRenderer(split.dataset, load_templates("movies"), counter=TokenCounter())
    config = cfg.prompts.model_copy(update={"folds": folds})
    records = InstructionBuilder(pools, renderer, models, config).build("pointwise", users, progress=False)
    return hint_quality(records)["rmse"]


def hint_gap(cfg: StudyConfig, extra_folds: int = 10) -> str:
    """The same training prompts with in-sample and out-of-fold hints, and the test-time reference."""
    from recranker.candidates import TrainingPools
    from recranker.prompts.instructions import InstructionBuilder
    from recranker.prompts.render import PromptRenderer
    from recranker.prompts.templates import load_templates
    from recranker.prompts.text import TokenCounter
    from recranker.stages import prepare_split, run_sample
    from recranker.stages.prompts import prepare_hints

    split = prepare_split(cfg)
    users, _ = run_sample(cfg, split=split)
    pools = TrainingPools(split, cfg.prompts.folds, cfg.prompts.seed)
    hints = prepare_hints(cfg, split, pools, progress=False)
    renderer = PromptRenderer(split.dataset, load_templates("movies"), counter=TokenCounter())
    rows = []
    for label, cross_fit in (("in-sample (cross-fitting off)", False), ("out-of-fold (default)", True)):
        config = cfg.prompts.model_copy(update={"hints": cfg.prompts.hints.model_copy(update={"cross_fit": cross_fit})})
        builder = InstructionBuilder(pools, renderer, hints, config)
        records = {task: builder.build(task, users, progress=False) for task in TASKS}
        rows.append((label, *training_quality(records, split)))
    rows.append((f"out-of-fold, {extra_folds} folds (pointwise only)", pointwise_rmse(cfg, split, users, hints, extra_folds),
                 "-", "-", "-", "-"))
    rows.append(("test time (fitted models, unseen later interactions)", *test_time_quality(hints, split, records)))
    head = ("| hints on | pointwise RMSE | pointwise RMSE, rating mix of the prompts | pairwise accuracy: liked vs disliked "
            "| liked vs non-interacted | listwise NDCG |")
    lines = [head, "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cell if isinstance(cell, str) else f"{cell:.3f}" for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def training_quality(records: dict, split) -> tuple:
    rmse = hint_quality(records["pointwise"])["rmse"]
    disliked = split.dataset.feedback.disliked
    by_kind: dict[str, list[bool]] = {"disliked": [], "negative": []}
    for r in records["pairwise"]:
        other = r["labels"][r["permutation"].index(1)]  # the less preferred item's label
        correct = r["hint"]["value"] == r["permutation"].index(0)
        if other == 0:
            by_kind["negative"].append(correct)
        elif disliked(other):
            by_kind["disliked"].append(correct)
    ndcg = hint_quality(records["listwise"])["ndcg"]
    return rmse, rmse, float(np.mean(by_kind["disliked"])), float(np.mean(by_kind["negative"])), ndcg


def test_time_quality(hints: HintModels, split, records: dict) -> tuple:
    """The fitted models on each user's interactions after the training cutoff (from the validation
    target up to the test target), which they never saw: RMSE of the predicted ratings (raw, and
    reweighted to the rating mix of the pointwise prompts), and pairwise accuracy of the ranking
    model on (later liked, later disliked) and (later liked, random non-interacted) pairs of the
    same user."""
    from recranker.retrieval.biased_mf import validation_window

    window = validation_window(split)
    users, items = window["user"].to_numpy(np.int64), window["item"].to_numpy(np.int64)
    truth = window["rating"].to_numpy(np.float64)
    predicted = hints.ratings(users, items[:, None])[:, 0]
    rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    mix = np.array([r["labels"][0] for r in records["pointwise"]])
    per_class = {v: np.mean((predicted[truth == v] - v) ** 2) for v in np.unique(truth)}
    matched = float(np.sqrt(sum(np.mean(mix == v) * per_class[v] for v in per_class)))
    liked_fn, disliked_fn = split.dataset.feedback.liked, split.dataset.feedback.disliked
    rng = np.random.default_rng(0)
    vs_disliked, vs_negative = [], []
    by_user = {}
    for u, i, r in zip(users, items, truth):
        by_user.setdefault(u, []).append((i, r))
    seen = split.seen("test")
    for u, rows in by_user.items():
        good = [i for i, r in rows if liked_fn(r)]
        bad = [i for i, r in rows if disliked_fn(r)]
        if not good:
            continue
        scores = dict(zip(good + bad, hints.scores(np.array([u]), np.array([good + bad]))[0]))
        vs_disliked += [scores[g] > scores[b] for g in good for b in bad]
        negatives = [j for j in rng.integers(split.n_items, size=4 * len(good)) if not seen[u, j] and j not in scores][: len(good)]
        if negatives:
            neg_scores = hints.scores(np.array([u]), np.array([negatives]))[0]
            vs_negative += [scores[g] > s for g, s in zip(good, neg_scores)]
    return rmse, matched, float(np.mean(vs_disliked)), float(np.mean(vs_negative)), "-"


def examples(cfg: StudyConfig) -> str:
    """One prompt per task and template domain (movies from the run; books and products render the
    same ML-100K instances through their templates: no book or product data is available offline)."""
    from recranker import assets
    from recranker.candidates import TrainingPools
    from recranker.prompts.instructions import InstructionBuilder
    from recranker.prompts.render import PromptRenderer
    from recranker.prompts.templates import load_templates
    from recranker.prompts.text import TokenCounter
    from recranker.stages import prepare_split, run_sample
    from recranker.stages.prompts import prepare_hints

    split = prepare_split(cfg)
    users, _ = run_sample(cfg, split=split)
    pools = TrainingPools(split, cfg.prompts.folds, cfg.prompts.seed)
    hints = prepare_hints(cfg, split, pools, progress=False)
    out = ["# Example prompts", "", "Written by `python bench/prompts.py`: the first training instruction of "
           "each task as its chat messages (system, user, assistant answer), as stored in the JSONL files. "
           "Books and products templates are shown on the same ML-100K users (no book or product dataset "
           "is available offline).", ""]
    counter = TokenCounter(assets.load_tokenizer(cfg.prompts.tokenizer))  # as the run's own prompts
    for domain in ("movies", "books", "products"):
        renderer = PromptRenderer(split.dataset, load_templates(domain), counter=counter)
        builder = InstructionBuilder(pools, renderer, hints, cfg.prompts)
        for task in TASKS:
            record = (read_jsonl(cfg.run_dir / "prompts" / f"{task}.jsonl")[0] if domain == "movies"
                      else builder.build(task, users[:1], progress=False)[0])
            out += [f"## {domain} / {task}", "", "```text"]
            out += [f"[{m['role']}]\n{m['content']}" for m in record["messages"]]
            out += ["```", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=5000)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default="bench-prompts")
    args = parser.parse_args()
    cli("fetch", "ml-100k")
    cli("fetch", "smollm2-135m")
    scratch, alone = timed_runs(args)
    cfg = StudyConfig(name=args.name, runs_dir=Path(args.runs_dir),
                      sampling={"instructions": args.instructions})
    stats = read_json(cfg.run_dir / "prompts" / "stats.json")
    sample = read_json(cfg.run_dir / "sample" / "summary.json")
    hints_seconds = read_json(cfg.run_dir / "hints" / "_stage.json")["seconds"]
    EXAMPLES.write_text(examples(cfg) + "\n")
    body = "\n\n".join([
        f"ML-100K, default split and settings, {args.instructions} sampled user instances, one instruction per "
        "task each (the paper's size). Token counts: SmolLM2-135M-Instruct tokenizer, chat template applied "
        "(prompt = system + user + generation prompt; answer = assistant text + end of turn).",
        f"**Time.** From an empty run directory: {scratch:.0f} s wall (LightGCN and biased MF on the whole "
        f"training set, then {hints_seconds:.0f} s for the 2 x 5 cross-fitted fold models, sampling, prompts). "
        f"The prompts stage alone (hint models read back, tokenizer loaded, 3 x {args.instructions} "
        f"instructions built, written and measured): **{alone:.1f} s wall**.",
        f"**Sample** (adaptive: importance + clustering, repetition penalty 0.95): {sample['distinct_users']} "
        f"distinct users ({sample['coverage']:.1%} of the split's), at most {sample['max_repeats']} instances "
        f"per user, mean {sample['mean_repeats']:.1f}, Gini {sample['gini']:.3f}.",
        "**Token lengths per task**\n\n" + length_table(stats),
        "**Hint accuracy: in-sample vs out-of-fold vs test time.** The same instructions (same draws) with "
        "hints from the models fitted on all training interactions (in-sample) or from the fold model that "
        "never saw the asked interactions (out-of-fold; 5 folds by default, and the pointwise hint with "
        "10 folds, whose fold models see 90% instead of 80% of the training interactions). Test time: the models fitted on the training set, "
        "on each user's later interactions (from the validation target up to the test target), which they never saw; the "
        "second column reweights the per-rating squared errors to the rating mix of the pointwise prompts "
        "(balanced liked / neutral / disliked by default), so it compares like with like.\n\n" + hint_gap(cfg),
        f"Example prompts: `{EXAMPLES.relative_to(EXAMPLES.parent.parent)}`.",
    ])
    write_section("prompts", body, f"python bench/prompts.py --instructions {args.instructions}")
    print(body)


if __name__ == "__main__":
    main()
