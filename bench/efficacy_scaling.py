"""Benchmark: does more tuning make the 135M model informative on ML-100K? Into BENCHMARKS.md.

On the CPU study's data, split and LightGCN candidates (configs/ml-100k-cpu.yaml, LightGCN only),
for each setting of instructions per task and epochs it builds the instructions, tunes the
default model (default losses) and asks it about the covered validation users (the tuned
system's validation pass: no test user is read), then measures each task's AUC of the
validation target against the other candidates (95% bootstrap CI), beside the AUCs of the two
hint models' own scores (the rating hint, biased MF; the ranking hint, LightGCN) and of the
backbone's order on the same candidates: so a reader sees whether the LLM adds anything beyond
copying its hints. Each setting is a run of its own (runs/scaling-n<N>-e<E>), resumable; a
finished one is read back.

Writes the table to the section "efficacy-scaling" (with --write) and a plot,
bench/efficacy_scaling.png: AUC against tuning tokens, one line per task, the hints' AUCs as
horizontal lines.

    python bench/efficacy_scaling.py [--settings 128x1 128x2 384x1] [--write]

The same on any study config (e.g. the planted positive control), with a tag naming the runs and
`--set` overrides for every setting (e.g. a learning rate, or the tasks to tune):

    python bench/efficacy_scaling.py --config configs/control-positive.yaml --tag lr1e-3 \
        --set tuning.learning_rate=1e-3 --settings 128x1 128x3 [--section efficacy-control]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker.artifacts import read_json  # noqa: E402
from recranker.cli.options import set_changes  # noqa: E402
from recranker.config import StudyConfig, load_config, override  # noqa: E402
from recranker.ranking.fusion import bootstrap_ci, pairwise_wins, relevance, target_auc  # noqa: E402
from recranker.report import markdown_table  # noqa: E402
from recranker.stages import ModelCache, full_hint_models, prepare_split, run_retrieval, run_tune  # noqa: E402
from recranker.stages.population import evaluation_population  # noqa: E402
from recranker.stages.rank import run_rank  # noqa: E402

HERE = Path(__file__).resolve().parent
BACKBONE = "lightgcn"


#: the ranking of the tuned arm's validation pass only: no baseline arms, one listwise pass, no generation
VALID_PASS_ONLY = {"ranking.arms": [], "ranking.bootstrap": 1, "ranking.generate": False}


def setting_config(base: StudyConfig, per_task: int, epochs: int, tag: str = "",
                   changes: dict | None = None) -> StudyConfig:
    """`base` with its LightGCN only (its own settings kept), `per_task` instructions per task,
    `epochs`, no baseline arms, one listwise pass, and `changes`; in its own run folder."""
    name = f"{base.name}-scaling{'-' + tag if tag else ''}-n{per_task}-e{epochs}"
    return override(base, {"name": name, "sampling.instructions": per_task, "tuning.epochs": epochs,
                           "retrieval.models": {BACKBONE: base.retrieval.model(BACKBONE).model_dump(mode="json")},
                           **VALID_PASS_ONLY, **(changes or {})})


def auc(scores: np.ndarray, grades: np.ndarray) -> dict | None:
    """Mean, 95% CI and users of the target's AUC under `scores` (None for a task not asked)."""
    if np.isnan(scores).all():
        return None
    values = target_auc(scores, grades)
    return {"auc": float(values.mean()), "ci": bootstrap_ci(values), "users": len(values)}


def task_scores(out) -> dict[str, np.ndarray]:
    """The LLM's score of each candidate under each task the ranking asked (a task not asked is left
    out): pointwise expected rating, pairwise wins, listwise log-probability."""
    scores = {"expected rating": out.point}
    if not np.isnan(out.pair_yes).all():
        scores["pairwise wins"] = pairwise_wins(out)
    if out.list_logprob.size:
        scores["listwise log-prob"] = out.list_logprob[:, 0]
    return {task: s for task, s in scores.items() if not np.isnan(s).all()}


def measure(cfg: StudyConfig) -> dict:
    """Tune (or read) and rank the covered validation users; the AUCs of each task and hint."""
    split = prepare_split(cfg)
    run_retrieval(cfg, BACKBONE, split=split)
    run_tune(cfg)
    out, cost = run_rank(cfg, BACKBONE, "tuned", "valid", split=split, models=ModelCache())
    _, gains = evaluation_population(cfg, split, BACKBONE, "valid")
    grades = relevance(out, gains)
    hints = full_hint_models(cfg, split)
    summary = read_json(cfg.run_dir / "tune" / "main" / "summary.json")
    tasks = task_scores(out)
    return {
        "run": cfg.name, "instructions": summary["examples"], "epochs": cfg.tuning.epochs, "tokens": summary["tokens"],
        "tune_seconds": summary["seconds"], "rank_seconds": cost["seconds"], "users": len(out),
        **{task: auc(tasks[task], grades) if task in tasks else None for task in SCORES[:3]},
        "rating hint": auc(hints.rating.predict_ratings(out.users, out.items), grades),
        "ranking hint": auc(hints.ranking.score(out.users, out.items, "valid"), grades),
        "backbone": auc(-np.tile(np.arange(out.items.shape[1], dtype=float), (len(out), 1)), grades),
    }


SCORES = ("expected rating", "pairwise wins", "listwise log-prob", "rating hint", "ranking hint", "backbone")


def table(rows: list[dict]) -> str:
    cells = []
    for r in rows:
        cell = {"run": r["run"], "instructions (all tasks)": r["instructions"], "epochs": r["epochs"], "tuning tokens": r["tokens"],
                "tune s": f"{r['tune_seconds']:.0f}", "valid users": r["users"]}
        cell.update({name: "-" if r[name] is None else
                     f"{r[name]['auc']:.3f} [{r[name]['ci'][0]:.3f}, {r[name]['ci'][1]:.3f}]" for name in SCORES})
        cells.append(cell)
    return markdown_table(cells)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for epochs in sorted({r["epochs"] for r in rows}):
        group = sorted((r for r in rows if r["epochs"] == epochs), key=lambda r: r["tokens"])
        for name, marker in zip(SCORES[:3], "os^"):
            group_task = [r for r in group if r[name] is not None]
            if not group_task:
                continue
            ax.plot([r["tokens"] for r in group_task], [r[name]["auc"] for r in group_task], marker=marker,
                    linestyle="-" if epochs == 1 else "--", label=f"{name}, {epochs} epoch(s)")
    for name, color in (("rating hint", "grey"), ("ranking hint", "black"), ("backbone", "brown")):
        ax.axhline(np.mean([r[name]["auc"] for r in rows]), color=color, linestyle=":", label=name)
    ax.axhline(0.5, color="red", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("tuning tokens")
    ax.set_ylabel("AUC of the validation target (covered users)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/ml-100k-cpu.yaml"))
    parser.add_argument("--settings", nargs="*", default=["128x1", "128x2", "384x1"],
                        help="instructions per task x epochs")
    parser.add_argument("--tag", default="", help="part of the runs' names (for settings changed by --set)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config change for every setting")
    parser.add_argument("--rows", type=Path, help="JSON lines file: append each measured row, read every row from it")
    parser.add_argument("--section", default="efficacy-scaling", help="BENCHMARKS.md section (and plot name)")
    parser.add_argument("--no-plot", action="store_true", help="the table only (rows that are not one sweep)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    base = load_config(args.config)
    rows = []
    for setting in args.settings:
        per_task, epochs = (int(x) for x in setting.split("x"))
        rows.append(measure(setting_config(base, per_task, epochs, args.tag, set_changes(args.set))))
        print(json.dumps(rows[-1]), flush=True)
        if args.rows:
            with args.rows.open("a") as fh:
                fh.write(json.dumps(rows[-1]) + "\n")
    if args.rows:  # every row measured so far, by any invocation (latest per run)
        rows = list({r["run"]: r for r in map(json.loads, args.rows.read_text().splitlines())}.values())
    body = table(rows) + "\n"
    if not args.no_plot:
        image = f"{args.section.replace('-', '_')}.png"
        plot(rows, HERE / image)
        body += f"\n![AUC against tuning tokens](bench/{image})\n"
    print(body)
    if args.write:
        write_section(args.section, body, "python bench/efficacy_scaling.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
