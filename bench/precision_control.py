"""Benchmark: the planted-control gate of a reduced-precision ranking mode. Into BENCHMARKS.md.

Issue 28's fourth gate: on the planted positive control (a model that has learnt the planted rule),
each task's validation AUC under a reduced-precision `ranking.dtype` must stay within 0.01 of
float32's. This takes one tuned control run (as bench/efficacy_scaling.py made it: its config,
tag, `--set` changes and setting), ranks its covered validation users once per dtype (each dtype in
a copy of the run, so no dtype's ranking replaces another's; the tuned model and every earlier
stage are reused), and reports per task: each dtype's AUC with its 95% bootstrap CI, the paired
difference from float32 with its CI, and the gate (|difference| < 0.01), plus the ranking time.

    python bench/precision_control.py --config configs/control-positive.yaml \
        --tag point-pair-rated-lr1e-3 --setting 512x4 --set tuning.learning_rate=0.001 ... \
        --dtypes float32 bfloat16-mlp [--write]

or, for a run `recranker run` tuned (its config and the same `--set` changes):

    python bench/precision_control.py --config configs/control-positive.yaml --run control-positive-512x4 \
        --set sampling.instructions=512 ... --dtypes float32 bfloat16-mlp [--write]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402
from efficacy_scaling import BACKBONE, VALID_PASS_ONLY, setting_config, task_scores  # noqa: E402

from recranker.cli.options import set_changes  # noqa: E402
from recranker.config import StudyConfig, load_config, override  # noqa: E402
from recranker.ranking.fusion import bootstrap_ci, relevance, target_auc  # noqa: E402
from recranker.report import markdown_table  # noqa: E402
from recranker.stages import ModelCache, prepare_split, run_tune  # noqa: E402
from recranker.stages.population import evaluation_population  # noqa: E402
from recranker.stages.rank import run_rank  # noqa: E402

GATE = 0.01


def per_user_aucs(cfg: StudyConfig) -> tuple[dict[str, np.ndarray], float]:
    """Each asked task's per-user validation AUC (covered users, in user order), and the ranking seconds."""
    split = prepare_split(cfg)
    run_tune(cfg)  # done: read back
    out, cost = run_rank(cfg, BACKBONE, "tuned", "valid", split=split, models=ModelCache())
    _, gains = evaluation_population(cfg, split, BACKBONE, "valid")
    grades = relevance(out, gains)
    return {task: target_auc(s, grades) for task, s in task_scores(out).items()}, float(cost["seconds"])


def dtype_run(cfg: StudyConfig, dtype: str, reference: str) -> StudyConfig:
    """`cfg` ranking in `dtype`; any dtype but `reference` in a copy of the run (made once, its
    rankings dropped), so each dtype keeps its own."""
    if dtype == reference:
        return override(cfg, {"ranking.dtype": dtype})
    copy = override(cfg, {"ranking.dtype": dtype, "name": f"{cfg.name}-{dtype}"})
    if not copy.run_dir.exists():
        if not (cfg.run_dir / "tune").exists():
            raise SystemExit(f"{cfg.run_dir}: no tuned model; run bench/efficacy_scaling.py with the same settings "
                             "(or `recranker run`, for --run) first")
        shutil.copytree(cfg.run_dir, copy.run_dir, ignore=shutil.ignore_patterns("rank"))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/control-positive.yaml"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--setting", default="512x4", help="instructions per task x epochs of the tuned run")
    parser.add_argument("--run", help="instead of a setting: a run `recranker run --config ... --set ...` tuned, by its "
                        "name (the reference dtype reads the run's own validation pass; the others rank in copies)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16-mlp"], help="the first is the reference")
    parser.add_argument("--section", default="precision-control")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    per_task, epochs = (int(x) for x in args.setting.split("x"))
    if args.run:
        cfg = override(load_config(args.config), {"name": args.run, **VALID_PASS_ONLY, **set_changes(args.set)})
    else:
        cfg = setting_config(load_config(args.config), per_task, epochs, args.tag, set_changes(args.set))
    reference = args.dtypes[0]
    results = {d: per_user_aucs(dtype_run(cfg, d, reference)) for d in args.dtypes}
    base, _ = results[reference]
    rows, passed = [], True
    for dtype, (aucs, seconds) in results.items():
        for task, values in aucs.items():
            lo, hi = bootstrap_ci(values)
            row = {"dtype": dtype, "task": task, "users": len(values), "AUC [95% CI]": f"{values.mean():.4f} [{lo:.3f}, {hi:.3f}]",
                   "rank s (valid)": f"{seconds:.0f}"}
            if dtype != reference:
                diff = values - base[task]
                dlo, dhi = bootstrap_ci(diff)
                ok = abs(diff.mean()) < GATE
                passed &= ok
                row.update({f"vs {reference} [95% CI]": f"{diff.mean():+.4f} [{dlo:+.4f}, {dhi:+.4f}]",
                            "users whose AUC moved": int((np.abs(diff) > 1e-9).sum()),
                            f"gate (abs. diff < {GATE})": "pass" if ok else "fail"})
            rows.append(row)
    header = list(dict.fromkeys(k for r in rows for k in r))
    body = (f"Run `{cfg.name}` (tuned on the planted positive control), its covered validation users ranked "
            f"once per dtype (a ranking already made in the run is read back, with its stage's time); AUC of the "
            f"validation target against the other candidates (`target_auc`), paired per user against {reference}.\n\n"
            + markdown_table([{k: r.get(k, "") for k in header} for r in rows])
            + f"\n\nGate (every task within {GATE} of {reference}): **{'pass' if passed else 'fail'}**.\n")
    print(body)
    if args.write:
        write_section(args.section, body, shlex.join(["python", "bench/precision_control.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
