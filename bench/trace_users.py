"""Trace a finished study's LLM by hand: a few covered users, from prompt to final order.

For `--users N` covered test users of one backbone's candidates (the tuned system's test pass)
it prints the prompt the LLM was asked about the target (the study's prompt path,
`LLMRanker.prompts`), then per candidate: title, backbone rank, whether it is the target, the
expected rating, pairwise wins, first-step listwise log-probability, and the paper hybrid's
utility with the run's weights, and the orders each gives. For one training record per task it
prints the tokens the loss sees (the answer mask) and its gold answer.

    python bench/trace_users.py configs/control-positive.yaml [--backbone lightgcn] [--users 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from recranker.config import load_config
from recranker.ranking.fusion import pairwise_wins, relevance
from recranker.ranking.hybrid import hybrid, utilities
from recranker.ranking.llm import RankerOutputs
from recranker.results import StudyResults
from recranker.split import Split
from recranker.stages import ModelCache, full_hint_models
from recranker.stages.population import evaluation_population
from recranker.tuning.data import encode_record
from recranker.types import Rankings


def loss_masks(run_dir: Path, tokenizer, tasks: list[str]) -> None:
    """The answer tokens (the only ones under the loss) of the first training record of each task."""
    for task in tasks:
        path = run_dir / "prompts" / f"{task}.jsonl"
        if not path.exists():
            continue
        record = json.loads(path.open().readline())
        example = encode_record(record, tokenizer)
        answer = example["input_ids"][example["answer_start"]:]
        print(f"[{task}] gold {record['messages'][-1]['content']!r}; tokens under the loss: "
              f"{[tokenizer.decode([t]) for t in answer]}; labels {record.get('labels')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--backbone", default="lightgcn")
    parser.add_argument("--users", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.config)
    split = Split.load(str(cfg.run_dir / "split"))
    out = RankerOutputs.load(cfg.run_dir / "rank" / args.backbone / "tuned" / "test" / "outputs.npz")
    _, gains = evaluation_population(cfg, split, args.backbone, "test")
    grades = relevance(out, gains)
    summary = StudyResults.load(cfg.run_dir / "results" / "summary.json").backbones[args.backbone]
    rcfg, top = cfg.ranking, cfg.prompts.listwise_top
    utility = hybrid(utilities(out, rcfg.constants, top, rcfg.listwise), summary.weights, rcfg.listwise)
    wins = pairwise_wins(out)
    backend = ModelCache().backend(cfg, "tuned")
    ranker = cfg.llm_ranker(backend, split, full_hint_models(cfg, split), "tuned", "test")
    loss_masks(cfg.run_dir, backend.tokenizer, cfg.ranked_tasks)
    titles = split.dataset.items["title"].to_numpy()
    for row in range(min(args.users, len(out))):
        target = int(np.argmax(grades[row]))
        one = ranker.prompts(_one(out, row), "test")
        asked = [text for task, _, index, text in one if task == "pointwise" and index == target]
        print(f"\n=== user {split.dataset.user_ids[out.users[row]]} (code {out.users[row]}), target column {target}")
        print(asked[0] if asked else one[0][3])
        print("col | title | target | E[rating] | pair wins | list log-p | hybrid")
        for j, item in enumerate(out.items[row]):
            lp = out.list_logprob[row, 0, j] if out.list_logprob.size else np.nan
            print(f"{j} | {titles[item]} | {'*' if j == target else ''} | {out.point[row, j]:.3f} | "
                  f"{wins[row, j]:.3f} | {lp:.2f} | {utility[row, j]:.3f}")
        for name, score in (("E[rating]", out.point[row]), ("pairwise", wins[row]), ("hybrid", utility[row])):
            print(f"order by {name}: {np.argsort(-score, kind='stable').tolist()} (target at "
                  f"{int(np.argsort(np.argsort(-score, kind='stable'))[target])})")


def _one(out: RankerOutputs, row: int) -> Rankings:
    """Row `row` of `out` as a one-user `Rankings` (backbone order)."""
    return Rankings(out.users[row:row + 1], out.items[row:row + 1], -np.arange(out.items.shape[1], dtype=float)[None])


if __name__ == "__main__":
    main()
