"""Benchmark: the planted-signal controls (DESIGN section 11) and their verdicts, into BENCHMARKS.md.

Reads the finished `recranker run configs/control-positive.yaml` and `configs/control-negative.yaml`
(with --run it runs them first, every finished stage read back) and writes, per control: the data
(users, coverage), the report tables (population and conditional HR/NDCG@3/5, paired t-tests
against the backbone), the per-task AUCs of the target against the other candidates with 95%
bootstrap CIs (tuned, zero-shot, no hints; the hint models' and the backbone's own), the AUC of a
plain text reader of the titles (`recranker.hints.title_word_scores`: the ceiling of what the
text tells), wall time and peak memory, and the gates of the issue with pass / fail:

- positive: each task's tuned AUC >= 0.75 with its CI above 0.5; the tuned hybrid above the
  backbone on conditional NDCG@3 at p < 0.001; the zero-shot hybrid's AUC below the tuned one's by
  more than both CIs' half-widths;
- negative: every task's CI contains 0.5 (tuned and zero-shot); no LLM system above the backbone at
  p < 0.05 on any measure.

    python bench/controls.py [--run] [--write] [--time-log POSITIVE.log NEGATIVE.log]
    python bench/controls.py --only positive --name-suffix=-e4 --set tuning.epochs=4 \
        --set tuning.learning_rate=0.001 --set 'ranking.arms=[zero_shot]' --section controls-e4 --write

`--time-log` takes the outputs of `/usr/bin/time -v recranker run ...` (one per control run) for the
peak memory; `--set`, `--name-suffix` and `--only` read (or run) a control at other settings, the
same changes as `recranker run CONFIG --name NAME --set ...`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402
from study import stage_times  # noqa: E402

from recranker.cli.options import set_changes  # noqa: E402
from recranker.config import StudyConfig, load_config, override  # noqa: E402
from recranker.hints import title_word_scores  # noqa: E402
from recranker.metrics import Measure  # noqa: E402
from recranker.ranking.fusion import bootstrap_ci, target_auc  # noqa: E402
from recranker.report import auc_rows, markdown_table, system_rows  # noqa: E402
from recranker.results import BackboneResults, StudyResults  # noqa: E402
from recranker.split import Split  # noqa: E402
from recranker.stages import run_study  # noqa: E402
from recranker.stages.results import paired_test  # noqa: E402
from recranker.types import Rankings  # noqa: E402

CONFIGS = {"positive": Path("configs/control-positive.yaml"), "negative": Path("configs/control-negative.yaml")}
TASKS = ("expected rating", "pairwise wins", "listwise log-prob, calibrated")
LLM_SYSTEMS = ("pointwise", "pairwise", "listwise 1-pass", "listwise 1-pass calibrated", "hybrid", "tuned hybrid",
               "learned fusion", "zero-shot hybrid", "hybrid w/o hints", "tuned hybrid w/o hints")


def text_reader_auc(cfg: StudyConfig, backbone: str) -> tuple[float, tuple[float, float], int]:
    """AUC (mean, CI, users) of the plain title reader on the backbone's covered test users."""
    split = Split.load(str(cfg.run_dir / "split"))
    cands = Rankings.load(cfg.run_dir / "retrieval" / backbone / "candidates_test.npz")
    grades = (cands.items == split.targets.loc[cands.users, "test_item"].to_numpy()[:, None]).astype(float)
    values = target_auc(title_word_scores(split, cands.users, cands.items, "test"), grades)
    return float(values.mean()), bootstrap_ci(values), len(values)


def conditional_p(cfg: StudyConfig, backbone: str, system: str, measure: Measure) -> tuple[float, float, float]:
    """(system's, backbone's conditional mean, paired t-test p) on the covered test users."""
    frame = pd.read_csv(cfg.run_dir / "results" / backbone / "per_user.csv")
    covered = frame[frame["covered"].astype(bool)]
    a, b = covered[f"{system} {measure}"].to_numpy(), covered[f"backbone {measure}"].to_numpy()
    return float(a.mean()), float(b.mean()), paired_test(a, b)


def _auc(summary: BackboneResults, system: str, score: str) -> dict | None:
    return (summary.diagnostics or {}).get(system, {}).get("auc", {}).get(score)


def gates(kind: str, cfg: StudyConfig, backbone: str, summary: BackboneResults,
          measures: list[Measure]) -> list[dict]:
    """The issue's gates for this control, each with its figure and pass / fail."""
    rows = []
    if kind == "positive":
        for task in TASKS:
            auc = _auc(summary, "tuned", task)
            ok = auc is not None and auc["auc"] >= 0.75 and auc["ci"][0] > 0.5
            rows.append({"gate": f"tuned {task}: AUC >= 0.75, CI above 0.5",
                         "figure": "-" if auc is None else f"{auc['auc']:.3f} [{auc['ci'][0]:.3f}, {auc['ci'][1]:.3f}]",
                         "pass": "yes" if ok else "NO"})
        ndcg3 = Measure("NDCG", 3)
        mine, base, p = conditional_p(cfg, backbone, "tuned hybrid", ndcg3)
        rows.append({"gate": "tuned hybrid above the backbone, conditional NDCG@3, p < 0.001",
                     "figure": f"{mine:.4f} vs {base:.4f}, p={p:.2g}", "pass": "yes" if mine > base and p < 1e-3 else "NO"})
        tuned, zero = _auc(summary, "tuned", "hybrid"), _auc(summary, "zero_shot", "hybrid")
        if tuned and zero:
            gap = tuned["auc"] - zero["auc"]
            half = (tuned["ci"][1] - tuned["ci"][0]) / 2 + (zero["ci"][1] - zero["ci"][0]) / 2
            rows.append({"gate": "zero-shot hybrid's AUC clearly below the tuned hybrid's (gap > both CI half-widths)",
                         "figure": f"{zero['auc']:.3f} vs {tuned['auc']:.3f}", "pass": "yes" if gap > half else "NO"})
        return rows
    for system in ("tuned", "zero_shot", "no_hints"):
        for task in TASKS:
            auc = _auc(summary, system, task)
            if auc is None or auc["auc"] is None:
                continue
            ok = auc["ci"][0] <= 0.5 <= auc["ci"][1]
            rows.append({"gate": f"{system} {task}: CI contains 0.5",
                         "figure": f"{auc['auc']:.3f} [{auc['ci'][0]:.3f}, {auc['ci'][1]:.3f}]", "pass": "yes" if ok else "NO"})
    winners = [f"{r.system} {m} (p={r.p[m]:.3g})" for r in summary.systems if r.system in LLM_SYSTEMS
               for m in measures if r.p[m] is not None and r.p[m] < 0.05 and r.mean[m] > summary.system("backbone").mean[m]]
    rows.append({"gate": "no LLM system above the backbone at p < 0.05 (population, every measure)",
                 "figure": "; ".join(winners) or "none", "pass": "NO" if winners else "yes"})
    return rows


def peak_gib(log: Path | None) -> str:
    """Peak resident memory from a `/usr/bin/time -v` log, in GiB."""
    if log is None or not log.exists():
        return "-"
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", log.read_text(errors="replace"))
    return f"{int(match.group(1)) / 2**20:.2f} GiB" if match else "-"


def section(kind: str, cfg: StudyConfig, time_log: Path | None, changes: dict | None = None) -> str:
    results = StudyResults.load(cfg.run_dir / "results" / "summary.json")
    _, wall = stage_times(cfg.run_dir)
    changed = "".join(f", {key}={value}" for key, value in (changes or {}).items())
    parts = [f"### {kind} control (`{CONFIGS[kind]}`{changed}; run `{cfg.run_dir}`)\n",
             f"Wall time {wall / 60:.1f} min (first stage start to last stage end), peak memory {peak_gib(time_log)}.\n"]
    for backbone, summary in results.backbones.items():
        reader, ci, users = text_reader_auc(cfg, backbone)
        parts += [f"{backbone} candidates: {summary.users} test users, {summary.covered} covered. A plain reader of "
                  f"the titles (`title_word_scores`) has AUC {reader:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] on the "
                  f"{users} covered users: what the text tells.\n",
                  "Gates:\n", markdown_table(gates(kind, cfg, backbone, summary, results.measures)) + "\n",
                  "Population (every test user; p: paired t-test against the backbone):\n",
                  markdown_table(system_rows(summary, results.measures)) + "\n",
                  "Conditional (covered users):\n",
                  markdown_table(system_rows(summary, results.measures, conditional=True)) + "\n",
                  "AUC of the target against the other candidates, covered test users, 95% bootstrap CIs:\n",
                  markdown_table(auc_rows(summary)) + "\n"]
        tuned = summary.fusion.get("tuned_hybrid", {}) if summary.fusion else {}
        if tuned:
            parts.append(f"Tuned hybrid: weights {tuned.get('weights')}, a0 {tuned.get('a0')}.\n")
        coef = (summary.fusion or {}).get("learned_fusion", {}).get("coef")
        if coef:
            parts.append("Learned fusion coefficients: " + ", ".join(f"{k} {v:+.3f}" for k, v in coef.items()) + ".\n")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run (or finish) the controls first")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--time-log", nargs="+", type=Path, metavar="LOG", help="one per control read, in order")
    parser.add_argument("--only", choices=list(CONFIGS), help="one control only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config change (repeatable)")
    parser.add_argument("--name-suffix", default="", help="appended to the runs' names (for runs changed by --set)")
    parser.add_argument("--section", default="controls", help="BENCHMARKS.md section")
    args = parser.parse_args()
    parts = []
    changes = set_changes(args.set)
    chosen = [(kind, path) for kind, path in CONFIGS.items() if args.only in (None, kind)]
    for k, (kind, path) in enumerate(chosen):
        cfg = load_config(path)
        cfg = override(cfg, {**changes, "name": cfg.name + args.name_suffix})
        if args.run:
            run_study(cfg)
        if not (cfg.run_dir / "results" / "summary.json").exists():
            print(f"{kind} control: no results yet (recranker run {path}, or --run)", file=sys.stderr)
            continue
        parts.append(section(kind, cfg, args.time_log[k] if args.time_log and k < len(args.time_log) else None, changes))
    body = "\n".join(parts)
    print(body)
    if args.write:
        write_section(args.section, body, shlex.join(["python", "bench/controls.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
