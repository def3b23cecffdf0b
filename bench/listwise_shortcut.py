"""Benchmark: what a planted control's listwise training answers reward, the hint's order or the titles.

The listwise ranker is read from the logits of the answer's first identifier, so what the tuning
teaches is which candidate comes first. On planted data (`data.format: planted`) the generator
knows each user's favourite word, so this reads a run's listwise instructions and scores three
readers against the gold answers, without any LLM:
- the ranking hint's order (what the prompt shows on its `Hint:` line);
- the title rule: candidates whose title holds the user's favourite word first, ties at random (the
  ceiling of reading the titles: the model has to infer the word from the history);
- both: the title rule, ties broken by the hint's order.

Per reader: NDCG over all candidates with the labels as gains (as `hints.hint_quality`), and how
often its first candidate holds the best label (the first answer token's target).

    python bench/listwise_shortcut.py --runs runs/control-positive-512x4 ... [--section S --write]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker.config import load_config  # noqa: E402
from recranker.data.planted import PlantedConfig, planted_frames  # noqa: E402
from recranker.metrics import per_user  # noqa: E402
from recranker.types import Rankings  # noqa: E402

READERS = ("hint", "title", "title, then hint")


def reader_scores(record: dict, title: dict[str, str], word: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(c,) scores of each reader over the record's candidates (in the order the prompt shows)."""
    c = len(record["labels"])
    hint = np.zeros(c)
    hint[np.asarray(record["hint"]["value"])] = -np.arange(c)  # the hint's order, best first
    holds = np.array([1.0 if word in title[item].split() else 0.0 for item in record["items"]])
    return {"hint": hint, "title": holds + 1e-3 * rng.random(c), "title, then hint": 100 * holds + hint}


def shortcut_rows(run: Path) -> dict:
    """The readers' NDCG and first-slot accuracy on `run`'s hinted listwise records."""
    tuned = run / "tune" / "main" / "config.yaml"
    cfg = load_config(tuned if tuned.exists() else run / "config.yaml", migrate=True)
    if cfg.data.format != "planted":
        raise SystemExit(f"{run}: not a planted run (data.format is {cfg.data.format})")
    _, items, truth = planted_frames(PlantedConfig(**cfg.data.planted.model_dump()))
    title = dict(zip(items["item"], items["title"]))
    word = dict(zip(truth["user"], truth["word"]))
    path = run / "prompts" / "listwise.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if r.get("hint") is not None and max(r["labels"]) > 0]
    if not records:
        raise SystemExit(f"{path}: no hinted listwise records")
    rng = np.random.default_rng(0)
    scores = [reader_scores(r, title, word[r["user"]], rng) for r in records]
    labels = [np.asarray(r["labels"], dtype=float) for r in records]
    row = {"run": run.name, "records": len(records),
           "retrieved": float(np.mean([r.get("candidates") == "retrieved" for r in records])),
           "liked": float(np.mean([(g >= cfg.data.liked_min).sum() for g in labels])),
           "rated": float(np.mean([(g > 0).sum() for g in labels])),
           "word": float(np.mean([(s["title"] >= 1).sum() for s in scores]))}
    gains = {k: {p: g for p, g in enumerate(lab) if g > 0} for k, lab in enumerate(labels)}
    for reader in READERS:
        order = np.array([np.argsort(-s[reader], kind="stable") for s in scores])  # (n, c) positions, best first
        ranked = Rankings(np.arange(len(records)), order, np.zeros(order.shape))
        row[f"{reader} NDCG"] = float(per_user(ranked, gains, [f"NDCG@{order.shape[1]}"]).iloc[:, 0].mean())
        row[f"{reader} first"] = float(np.mean([lab[o[0]] == lab.max() for lab, o in zip(labels, order)]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="planted run folders with prompts/")
    parser.add_argument("--section", default="listwise-shortcut")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = [shortcut_rows(run) for run in args.runs]
    header = ["run", "records", "retrieved share", "liked / rated / word-holding per list"]
    header += [f"{r} NDCG" for r in READERS] + [f"{r}: first right" for r in READERS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["run"], str(r["records"]), f"{r['retrieved']:.2f}", f"{r['liked']:.2f} / {r['rated']:.2f} / {r['word']:.2f}"]
        cells += [f"{r[f'{x} NDCG']:.3f}" for x in READERS] + [f"{r[f'{x} first']:.3f}" for x in READERS]
        lines.append("| " + " | ".join(cells) + " |")
    body = ("Hinted listwise training records of each run, read without an LLM (bench/listwise_shortcut.py's "
            "docstring): `NDCG` over all candidates, gains = labels; `first right` = the reader's first candidate "
            "holds the best label (the target of the first answer token, which the listwise score reads).\n\n"
            + "\n".join(lines) + "\n")
    print(body)
    if args.write:
        write_section(args.section, body, shlex.join(["python", "bench/listwise_shortcut.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
