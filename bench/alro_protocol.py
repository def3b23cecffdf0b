"""Benchmark: ALRO's protocol on ML-100K, the ALRO losses against SFT only, on the same users.

Reads two finished runs of `configs/ml-100k-alro.yaml` (25 LightGCN candidates, listwise only,
graded NDCG@3/10/25 from the user's future ratings): the config's own (SFT + soft lambda +
permutation-sensitive loss) and the SFT-only one (`--name ml-100k-alro-sft --set
tuning.alro.soft_lambda=false --set tuning.alro.permutation=false`); with --run it runs both first
(finished stages read back). Writes, for each system both runs share, the population and covered
users' means under each tuning, the paired t-test of ALRO against SFT on the same users, and ALRO's
published ML-1M figures for scale, to the section "alro-protocol" of BENCHMARKS.md (--write).

    python bench/alro_protocol.py [--run] [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402
from study import stage_times  # noqa: E402

from recranker.config import load_config, override  # noqa: E402
from recranker.report import markdown_table  # noqa: E402
from recranker.results import StudyResults  # noqa: E402
from recranker.stages import run_study  # noqa: E402
from recranker.stages.results import paired_test  # noqa: E402

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ml-100k-alro.yaml"
SFT_ONLY = {"name": "ml-100k-alro-sft", "tuning.alro.soft_lambda": False, "tuning.alro.permutation": False}
#: ALRO (Zhang et al.), their Table on ML-1M with a 7B LLM: NDCG@3, @10, @25
PUBLISHED = {"NDCG@3": 0.6551, "NDCG@10": 0.7124, "NDCG@25": 0.8835}


def run_results(cfg) -> tuple[StudyResults, pd.DataFrame, float, dict]:
    """The study's results, the first backbone's per-user table, the wall time and the tuning summary."""
    results = StudyResults.load(cfg.run_dir / "results" / "summary.json")
    backbone = next(iter(results.backbones))
    table = pd.read_csv(cfg.run_dir / "results" / backbone / "per_user.csv", index_col=0)
    tune_dir = cfg.run_dir / "tune" / cfg.tuning.variant
    tune = json.loads((tune_dir / "_stage.json").read_text())
    rows, wall = stage_times(cfg.run_dir)
    last = max(json.loads(m.read_text())["finished"] for m in cfg.run_dir.rglob("_stage.json"))
    tune["own_seconds"] = last - json.loads((tune_dir / "_started.json").read_text())["started"]
    return results, table, wall, tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run (or finish) both studies first")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    alro_cfg = load_config(CONFIG)
    sft_cfg = override(alro_cfg, SFT_ONLY)
    if args.run:
        run_study(alro_cfg)
        run_study(sft_cfg)
    (alro, a_users, a_wall, a_tune), (sft, s_users, _, s_tune) = run_results(alro_cfg), run_results(sft_cfg)
    if not a_users.index.equals(s_users.index):
        raise SystemExit("the two runs evaluated different users: compare runs of the same split and sample")
    backbone = next(iter(alro.backbones))
    a, s = alro.backbones[backbone], sft.backbones[backbone]
    measures = [str(m) for m in alro.measures]
    covered = a_users["covered"].to_numpy(bool)
    rows = []
    for system in [r.system for r in a.systems if r.system in {x.system for x in s.systems}]:
        for scope, mask in (("all", slice(None)), ("covered", covered)):
            row = {"system": system, "users": scope}
            for m in measures:
                x, y = a_users[f"{system} {m}"].to_numpy()[mask], s_users[f"{system} {m}"].to_numpy()[mask]
                row[f"{m} ALRO"], row[f"{m} SFT"] = f"{x.mean():.4f}", f"{y.mean():.4f}"
                row[f"p {m}"] = "-" if system == "backbone" else f"{paired_test(x, y):.3f}"
            rows.append(row)
    published = {"system": "ALRO, published (ML-1M, 7B LLM; different data and model size)", "users": "-"}
    for m in measures:
        published.update({f"{m} ALRO": f"{PUBLISHED[m]:.4f}" if m in PUBLISHED else "-", f"{m} SFT": "-", f"p {m}": "-"})
    signal = []
    for score in ("listwise log-prob", "listwise log-prob, calibrated"):
        row = {"tuned LLM's score (covered test users)": score}
        for name, summary in (("ALRO", a), ("SFT", s)):
            auc = summary.diagnostics.get("tuned", {}).get("auc", {}).get(score)
            row[f"AUC {name} [95% CI]"] = "-" if auc is None else f"{auc['auc']:.3f} [{auc['ci'][0]:.3f}, {auc['ci'][1]:.3f}]"
        signal.append(row)
    row = {"tuned LLM's score (covered test users)": "raw first pick: share at shown position A"}
    for name, summary in (("ALRO", a), ("SFT", s)):
        pick = summary.diagnostics.get("tuned", {}).get("first_pick", {})
        row[f"AUC {name} [95% CI]"] = f"{pick['shares'][0]:.2f} of {pick['answers']} prompts" if pick.get("answers") else "-"
    signal.append(row)
    body = "\n".join([
        f"Config `configs/ml-100k-alro.yaml` (25 {backbone} candidates, listwise task only, graded relevance: gain = "
        "rating - 3 of each liked item the user rates at or after the test target), tuned with SFT + soft lambda + "
        "permutation-sensitive losses (ALRO) and with SFT only, the same instructions and users. "
        f"{a.users} test users, {a.covered} with the test target among the candidates ('covered'; ALRO's protocol "
        "always has the target among its 25). p: paired t-test ALRO vs SFT on the same users.\n",
        markdown_table(rows + [published]) + "\n",
        "The LLM's own listwise signal (the rows above add it to the backbone's order with the paper's small "
        "listwise constant): AUC of the target against the other 24 candidates under the first-step identifier "
        "log-probability, 0.5 = no information.\n",
        markdown_table(signal) + "\n",
        f"Tuning (128 listwise instructions, 1 epoch): ALRO {a_tune['seconds']:.0f} s (second, shuffled views for the "
        f"permutation loss), SFT {s_tune['seconds']:.0f} s. From the tune stage's start to the report: ALRO "
        f"{a_tune['own_seconds'] / 60:.1f} min, SFT {s_tune['own_seconds'] / 60:.1f} min; the ALRO study from its first "
        f"stage (split, backbones, cross-fitted hints, sample, prompts): {a_wall / 60:.1f} min (the SFT run read those "
        "stages back).",
    ])
    print(body)
    if args.write:
        write_section("alro-protocol", body, "python bench/alro_protocol.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
