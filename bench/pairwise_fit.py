"""Diagnostic: does a tuned model answer its own training questions better than new ones?

For a finished tuning (a run whose `tune/main/` holds an adapter), the tuned model is asked the
questions of its own training file (`prompts/<task>.jsonl`, the answer left out) and the same
number of new questions of the same kind: built by the same `InstructionBuilder`, with the same
pools and hint models, but another draft seed and only users the training sample never drew.
For each set: accuracy of the model's answer (pairwise: P(Yes) > 0.5 against the gold Yes/No;
pointwise: the expected rating on the right side of the liked threshold), the AUC of its score
against the gold label, and the mean loss of the gold answer's first token. A model that fits
its training questions and fails the new ones memorised them; one that fails both did not learn.

    python bench/pairwise_fit.py --runs runs/control-positive-scaling-pair-rated-lr1e-3-n512-e4 \
        [runs/...] [--n 200] [--write]

Each run is asked the pointwise and pairwise questions of the tasks it was tuned on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker import assets  # noqa: E402
from recranker.candidates import TrainingPools  # noqa: E402
from recranker.config import load_config  # noqa: E402
from recranker.prompts.export import read_jsonl  # noqa: E402
from recranker.prompts.instructions import InstructionBuilder  # noqa: E402
from recranker.prompts.text import chat_text  # noqa: E402
from recranker.ranking.backend import Request  # noqa: E402
from recranker.ranking.fusion import target_auc  # noqa: E402
from recranker.ranking.llm import _softmax  # noqa: E402
from recranker.report import markdown_table  # noqa: E402
from recranker.stages import ModelCache, prepare_split  # noqa: E402
from recranker.stages.prompts import prepare_hints  # noqa: E402
from recranker.stages.sample import run_sample  # noqa: E402

RATINGS = [str(r) for r in range(1, 6)]


def held_out_records(cfg, split, task: str, n: int, seed: int) -> list[dict]:
    """`n` new training-style records of `task`: the run's pools and hint models, draft seed
    `seed`, users outside the training sample only (each at most once, in a seeded order)."""
    users, _ = run_sample(cfg, split=split, progress=False)
    pools = TrainingPools(split, cfg.prompts.folds, cfg.prompts.seed)
    hints = prepare_hints(cfg, split, pools, progress=False)
    fresh = np.setdiff1d(np.arange(split.dataset.n_users), np.unique(users))
    fresh = np.array([u for u in fresh if len(pools.usable_folds(int(u)))])
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(fresh)[:n]
    tokenizer = assets.load_tokenizer(cfg.prompts.tokenizer) if cfg.prompts.tokenizer else None
    builder = InstructionBuilder(pools, cfg.renderer(split.dataset, tokenizer, cfg.prompts.tasks),
                                 hints, cfg.prompts.model_copy(update={"seed": seed}))
    return builder.build(task, chosen, progress=False)


def gold(record: dict, task: str, liked_min: float) -> int:
    """1 for a Yes (pairwise) or a liked rating (pointwise), else 0."""
    answer = record["messages"][-1]["content"].strip()
    return int(answer == "Yes") if task == "pairwise" else int(float(answer) >= liked_min)


def ask(backend, records: list[dict], task: str, liked_min: float) -> dict:
    """The tuned model's answers to `records` (prompts without their answers)."""
    answers = ["Yes", "No"] if task == "pairwise" else RATINGS
    token_ids = [backend.token_id(a) for a in answers]
    requests = [Request(chat_text(r["messages"][:-1], backend.tokenizer, generation_prompt=True), i)
                for i, r in enumerate(records)]
    outputs = backend.run(requests, token_ids)
    probs = np.array([_softmax(o.logprobs) for o in outputs])
    labels = np.array([gold(r, task, liked_min) for r in records])
    if task == "pairwise":
        score = probs[:, 0]
        right = (score > 0.5) == (labels == 1)
        loss = -np.log(np.where(labels == 1, probs[:, 0], probs[:, 1]))
    else:
        score = probs @ np.arange(1, 6)
        right = (score >= liked_min - 0.5) == (labels == 1)
        truth = np.array([RATINGS.index(r["messages"][-1]["content"].strip()) for r in records])
        loss = -np.log(probs[np.arange(len(records)), truth])
    auc = target_auc(score[None, :], labels[None, :])  # one "user": every (Yes, No) or (liked, not) pair
    return {"questions": len(records), "accuracy": float(right.mean()), "auc": float(auc[0]) if len(auc) else float("nan"),
            "loss": float(loss.mean()), "share yes/liked": float(labels.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders with tune/main/ finished")
    ap.add_argument("--n", type=int, default=200, help="questions of each set")
    ap.add_argument("--seed", type=int, default=1234, help="draft seed of the new questions")
    ap.add_argument("--section", default="pairwise-fit")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    rows = []
    for run in args.runs:
        cfg = load_config(run / "tune" / "main" / "config.yaml", migrate=True)
        split = prepare_split(cfg)
        backend = ModelCache().backend(cfg, "tuned")
        for task in [t for t in cfg.prompts.tasks if t in ("pointwise", "pairwise")]:
            train = read_jsonl(cfg.run_dir / "prompts" / f"{task}.jsonl")
            train = [train[i] for i in np.random.default_rng(0).permutation(len(train))[:args.n]]
            new = held_out_records(cfg, split, task, args.n, args.seed)
            for name, records in (("its training questions", train), ("new questions, unseen users", new)):
                rows.append({"run": cfg.name, "task": task, "set": name,
                             **ask(backend, records, task, cfg.data.liked_min)})
                print(json.dumps(rows[-1]), flush=True)
    table = markdown_table(rows)
    print(table)
    if args.write:
        write_section(args.section, table, command="python bench/pairwise_fit.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
