"""Benchmark: a whole study (`recranker run CONFIG`) and its results, into BENCHMARKS.md.

Reads the results a finished `recranker run CONFIG` wrote (runs/<name>/results/summary.json; with
--run it runs the study first, every finished stage read back), then writes the population tables of every backbone (with paired t-tests against the backbone), the hybrid's
weights, the parse outcomes of listwise answers, the cost of every LLM pass and the study's wall
time (from the first stage's start to the last stage's end, read from the stage markers) to the
section "study-<name>" of BENCHMARKS.md (with --write).

    python bench/study.py configs/ml-100k-cpu.yaml [--run] [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker.config import load_config  # noqa: E402
from recranker.report import (auc_rows, cost_rows, difference_rows, fusion_lines, listwise_rows,  # noqa: E402
                              markdown_table, position_rows, system_rows)
from recranker.results import StudyResults  # noqa: E402
from recranker.stages import run_study  # noqa: E402


def stage_times(run_dir: Path) -> tuple[list[dict], float]:
    """Seconds of each finished stage (start to finish) and the wall time of the whole run."""
    rows, starts, ends = [], [], []
    for marker in sorted(run_dir.rglob("_stage.json")):
        finished = json.loads(marker.read_text())["finished"]
        started_file = marker.with_name("_started.json")
        started = json.loads(started_file.read_text())["started"] if started_file.exists() else None
        info = json.loads(marker.read_text())
        seconds = info.get("seconds") or info.get("train_seconds")
        rows.append({"stage": str(marker.parent.relative_to(run_dir)),
                     "seconds": f"{seconds:.0f}" if seconds is not None else "-"})
        ends.append(finished)
        starts.append(started if started is not None else finished - (seconds or 0))
    return rows, (max(ends) - min(starts)) if ends else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--run", action="store_true", help="run (or finish) the study first")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--section", help="the section of BENCHMARKS.md to write (default: study-<the config's name>)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    summary_path = cfg.run_dir / "results" / "summary.json"
    if args.run or not summary_path.exists():
        run_study(cfg)
    results = StudyResults.load(summary_path)
    stages, wall = stage_times(cfg.run_dir)
    parts = [f"Config `{args.config}`; wall time of the study, first stage start to last stage end: "
             f"{wall / 60:.1f} min.\n"]
    for backbone, summary in results.backbones.items():
        w = summary.weights
        tuning = summary.weight_tuning
        parts += [f"### {backbone}\n", f"{summary.users} test users, {summary.covered} with the target among "
                  f"the candidates; hybrid weights ({w[0]:.1f}, {w[1]:.1f}, {w[2]:.1f})"
                  + (f" tuned on {tuning['valid_users']} validation users" if tuning.get("tuned") else "") + ".\n",
                  markdown_table(system_rows(summary, results.measures)) + "\n",
                  "Difference from the backbone, 95% bootstrap CIs over users:\n",
                  markdown_table(difference_rows(summary, results.measures)) + "\n",
                  "Conditional (users whose target is a candidate):\n",
                  markdown_table(system_rows(summary, results.measures, conditional=True)) + "\n"]
        parts += [" ".join(fusion_lines(summary)) + "\n"]
        if summary.diagnostics:
            parts += ["Signal per task on the covered test users (AUC of the target against the other candidates, "
                      "95% bootstrap CI):\n", markdown_table(auc_rows(summary)) + "\n",
                      "First listwise pick by first-step logits, by shown position:\n",
                      markdown_table(position_rows(summary)) + "\n"]
        listwise = listwise_rows(summary)
        if listwise:
            parts += ["Generated listwise answers:\n", markdown_table(listwise) + "\n"]
        parts += ["LLM passes:\n", markdown_table(cost_rows(summary)) + "\n"]
    parts += ["Stages:\n", markdown_table(stages) + "\n"]
    body = "\n".join(parts)
    print(body)
    if args.write:
        write_section(args.section or f"study-{cfg.name}", body, "python bench/study.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
