"""Tables for the terminal and the report (Markdown)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recranker.metrics import Measure
from recranker.arms import ARMS, Arm
from recranker.results import BackboneResults, StudyResults


def markdown_table(rows: Iterable[Mapping[str, Any]], digits: int = 4) -> str:
    """Rows of dicts as a Markdown table; columns in first-seen order, floats rounded."""
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
        return "" if value is None else str(value)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def metrics_rows(summaries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per retrieval summary (as `stages.run_retrieval` returns): test metrics and time."""
    rows = []
    for summary in summaries:
        row: dict[str, Any] = {"model": summary["model"]}
        row.update(summary["test"])
        row["train s"] = f"{summary['train_seconds']:.1f}"
        peak = summary.get("peak_rss_mib")
        row["peak MiB"] = None if peak is None else f"{peak:.0f}"
        rows.append(row)
    return rows


def prompt_rows(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per task of the prompts stage's statistics: size, token lengths, time, hint quality."""
    rows = []
    for task, s in stats["tasks"].items():
        row: dict[str, Any] = {"task": task, "instructions": s["instructions"]}
        for key in ("prompt_mean", "prompt_p50", "prompt_p90", "prompt_max", "answer_mean"):
            row[key.replace("_", " ")] = f"{s[key]:.0f}" if key != "answer_mean" else f"{s[key]:.1f}"
        row["seconds"] = f"{s['seconds']:.1f}"
        quality = s.get("hint_quality") or {}
        row["hint"] = ", ".join(f"{k} {v:.3f}" for k, v in quality.items() if k != "hinted") or "-"
        rows.append(row)
    return rows


def plot_loss_curve(log_history: list[Mapping[str, Any]], path: str | Path, *, title: str = "") -> None:
    """A PNG of the training loss and its terms (sft, rank, perm) per logged optimizer step."""
    plt = _pyplot()
    lines = [row for row in log_history if "loss" in row and "step" in row]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("loss", "total"), ("sft", "SFT (answer tokens)"), ("rank", "soft lambda (unweighted)"),
                       ("perm", "permutation (unweighted)")):
        points = [(row["step"], row[key]) for row in lines if key in row]
        if points:
            ax.plot(*zip(*points), marker="o" if len(points) < 30 else None, markersize=3, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training loss")
    ax.grid(alpha=0.3)
    if lines:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no logged steps", ha="center", va="center", transform=ax.transAxes)
    _save(fig, Path(path))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from recranker.artifacts import atomic_write

    fig.tight_layout()
    with atomic_write(path, binary=True) as fh:
        fig.savefig(fh, format="png", dpi=110)
    _pyplot().close(fig)


def system_rows(backbone: BackboneResults, measures: list[Measure], *, conditional: bool = False) -> list[dict[str, Any]]:
    """One row per system of one backbone: each measure, with `*` when its paired t-test against
    the backbone has p < 0.05 (the p-value in brackets)."""
    rows = []
    for s in backbone.systems:
        row: dict[str, Any] = {"system": s.system}
        for m in measures:
            value, p = (s.conditional if conditional else s.mean)[m], s.p[m]
            mark = "" if p is None or conditional else (f" (p={p:.3f}){'*' if p < 0.05 else ''}")
            row[str(m)] = "-" if value is None else f"{value:.4f}{mark}"
        rows.append(row)
    return rows


def difference_rows(backbone: BackboneResults, measures: list[Measure]) -> list[dict[str, Any]]:
    """One row per system but the backbone: its difference from the backbone per measure with the
    95% bootstrap confidence interval, and the population mean's own interval."""
    rows = []
    base = backbone.system("backbone")
    for s in backbone.systems:
        if s.system == "backbone":
            continue
        row: dict[str, Any] = {"system": s.system}
        for m in measures:
            diff, ci, own = s.mean[m] - base.mean[m], s.diff_ci.get(m), s.ci.get(m)
            row[f"Δ{m} [95% CI]"] = f"{diff:+.4f}" + ("" if ci is None else f" [{ci[0]:+.4f}, {ci[1]:+.4f}]")
            row[f"{m} CI"] = "-" if own is None else f"[{own[0]:.4f}, {own[1]:.4f}]"
        rows.append(row)
    return rows


def auc_rows(backbone: BackboneResults) -> list[dict[str, Any]]:
    """Per score (a task's, the backbone's order, the fusions'), each LLM arm's AUC of the target
    against the other candidates on the covered test users, with its 95% bootstrap CI."""
    scores: dict[str, dict[str, Any]] = {}
    for system, report in backbone.diagnostics.items():
        for name, auc in report.get("auc", {}).items():
            cell = "-" if auc["auc"] is None else f"{auc['auc']:.3f} [{auc['ci'][0]:.3f}, {auc['ci'][1]:.3f}]"
            scores.setdefault(name, {"score": name})[arm_label(system)] = cell
    return list(scores.values())


def arm_label(name: str) -> str:
    """The report's name of the arm `name` (`recranker.arms`); other names as they are."""
    return ARMS[Arm(name)].label if name in ARM_NAMES else name


ARM_NAMES = {arm.value for arm in Arm}


def position_rows(backbone: BackboneResults) -> list[dict[str, Any]]:
    """Per LLM arm, raw and calibrated: where the first listwise pick (by first-step logits) was
    shown, the largest gap from uniform in points and the chi-square p-value against uniform."""
    rows = []
    for system, report in backbone.diagnostics.items():
        for key, label in (("first_pick", "raw"), ("first_pick_calibrated", "calibrated")):
            test = report.get(key) or {}
            if not test.get("answers"):
                continue
            source = (backbone.fusion.get("position_prior", {}).get(system) or {}).get("from", "")
            if key == "first_pick_calibrated" and source:
                label += f" (prior: {source.split(' (')[0]})"
            rows.append({"arm": arm_label(system), "logits": label, "answers": test["answers"],
                         "shares A, B, ...": " ".join(f"{x:.2f}" for x in test["shares"]),
                         "max gap (points)": f"{test['max_gap_points']:.1f}", "chi-square p": f"{test['chi2_p']:.3g}"})
    return rows


def fusion_lines(backbone: BackboneResults) -> list[str]:
    """How the tuned hybrid and the learned fusion were fitted, in sentences."""
    lines = []
    tuned = backbone.fusion.get("tuned_hybrid")
    if tuned:
        w = tuned["weights"]
        lines.append(f"Tuned hybrid: weights (point, pair, list) = ({w[0]:.2f}, {w[1]:.2f}, {w[2]:.2f}), backbone "
                     f"weight a0 = {tuned['a0']:g}, on {tuned['valid_users']} validation users ({tuned['metric']} "
                     f"{tuned['valid_value']:.4f}; the backbone's {tuned['valid_backbone']:.4f}).")
    learned = backbone.fusion.get("learned_fusion")
    if learned:
        coef = ", ".join(f"{k} {v:+.3f}" for k, v in learned["coef"].items())
        lines.append(f"Learned fusion: {learned['model']}, C = {learned['C']:g}, {learned['pairs']} pairs of "
                     f"{learned['valid_users']} validation users; coefficients: {coef}.")
    selected = backbone.fusion.get("selected")
    if selected:
        values = ", ".join(f"{name} {value:.4f}" for name, value in selected["valid"].items())
        lines.append(f"Served system (`recranker serve`, `Reranker`): **{selected['system']}**, selected on the "
                     f"validation users by {selected['metric']} ({values}; the learned fusion's cross-fitted).")
    return lines


def cost_rows(backbone: BackboneResults) -> list[dict[str, Any]]:
    """Seconds and tokens per user of each LLM pass of one backbone."""
    rows = []
    for name, cost in backbone.cost.items():
        tokens = cost.get("tokens_per_user") or {}
        rows.append({"pass": name, "users": cost["users"], "seconds": f"{cost['seconds']:.0f}",
                     "s/user": "-" if cost.get("seconds_per_user") is None else f"{cost['seconds_per_user']:.2f}",
                     "prompt tokens/user": f"{tokens.get('prompt_tokens', 0):.0f}",
                     "computed tokens/user": f"{tokens.get('computed_tokens', 0):.0f}",
                     "generated tokens/user": f"{tokens.get('generated_tokens', 0):.1f}", "device": cost.get("device")})
    return rows


def listwise_rows(backbone: BackboneResults) -> list[dict[str, Any]]:
    """Parse outcomes of the generated listwise answers per LLM arm."""
    rows = []
    for system, stats in backbone.listwise.items():
        if stats.get("answers"):
            rows.append({"arm": arm_label(system), "answers": stats["answers"],
                         **{k: f"{stats[k]:.3f}" for k in ("ok", "repaired", "unparsable")}})
    return rows


def plot_systems(results: StudyResults, path: Path) -> None:
    """Bar chart: each system's population metrics, one panel per backbone."""
    plt = _pyplot()
    backbones = list(results.backbones)
    measures = [m for m in results.measures if m.k in (3, 5)] or results.measures[:4]
    fig, axes = plt.subplots(1, len(backbones), figsize=(6 * len(backbones), 4.5), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        systems = results.backbones[backbone].systems
        x = range(len(systems))
        width = 0.8 / len(measures)
        for k, m in enumerate(measures):
            ax.bar([i + k * width for i in x], [s.mean[m] for s in systems], width, label=str(m))
        ax.set_xticks([i + 0.4 - width / 2 for i in x], [s.system for s in systems], rotation=35, ha="right")
        ax.set_title(f"{backbone} candidates")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_position_bias(results: StudyResults, path: Path, candidates: int) -> None:
    """Share of listwise answers whose top candidate sat at each shown position (A, B, ...), for
    the untuned and the tuned LLM: flat is unbiased (candidates are shuffled)."""
    plt = _pyplot()
    backbones = list(results.backbones)
    fig, axes = plt.subplots(1, len(backbones), figsize=(6 * len(backbones), 4), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        for system, stats in results.backbones[backbone].listwise.items():
            if system in ARM_NAMES and not ARMS[Arm(system)].hints:  # the arms with hints: tuned and untuned
                continue
            calibrated = (results.backbones[backbone].diagnostics.get(system) or {}).get("first_pick_calibrated") or {}
            curves = [(key, stats.get(key)) for key in ("top1_position_logits", "top1_position_generated")]
            for key, counts in curves + [("calibrated_logits", calibrated.get("shares"))]:
                counts = np.asarray(counts or [], dtype=float)
                if counts.sum():
                    label = f"{arm_label(system).removesuffix(' LLM')} ({key.replace('top1_position_', '')})"
                    style = {"top1_position_generated": "--", "calibrated_logits": ":"}.get(key, "-")
                    ax.plot(range(len(counts)), counts / counts.sum(), style, marker="o", label=label)
        ax.axhline(1 / max(1, candidates), color="grey", lw=0.8)
        ax.set_xlabel("shown position of the top-ranked candidate (0 = A)")
        ax.set_ylabel("share of answers")
        ax.set_title(f"listwise position bias, {backbone} candidates")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no listwise answer: an empty panel, no legend
            ax.legend(fontsize=8)
    _save(fig, path)


@dataclass(frozen=True)
class ReportHeader:
    """What a report says of its study besides the results: its `name`, its run folder `run_dir`
    (the report goes to run_dir/report/), the data format, the candidates per user `m` and the
    LLM (`llm`: its spec, `tuned`: the tune/<variant> folder it was tuned into, None when untuned)."""

    name: str
    run_dir: Path
    data: str
    m: int
    llm: str
    tuned: str | None = None


def write_report(header: ReportHeader, results: StudyResults) -> Path:
    """run_dir/report/report.md with the tables and the PNG plots beside it."""
    from recranker.artifacts import atomic_write

    folder = Path(header.run_dir) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    measures = results.measures
    lines = [f"# recranker study `{header.name}`", "",
             f"Data: {header.data}; candidates m = {header.m}; LLM: "
             f"{header.llm} ({'tuned: ' + header.tuned if header.tuned else 'untuned'}); "
             f"relevance: {'graded (future ratings)' if results.graded else 'the test target'}.",
             "Population metrics average over all evaluated test users (a missed target scores 0); `*`: paired "
             "t-test against the backbone, p < 0.05. Conditional metrics average over the users whose target is "
             "among the candidates.", ""]
    for backbone, summary in results.backbones.items():
        w = summary.weights
        tuned = summary.weight_tuning
        lines += [f"## {backbone}", "",
                  f"{summary.users} test users, {summary.covered} with the target among the candidates. "
                  f"Hybrid weights (point, pair, list) = ({w[0]:.2f}, {w[1]:.2f}, {w[2]:.2f})"
                  + (f", tuned on {tuned['valid_users']} validation users ({tuned['metric']} "
                     f"{tuned['valid_value']:.4f})." if tuned.get("tuned") else ", as configured.")
                  + " The baselines' hybrids use the same weights.", "",
                  "### Population", "", markdown_table(system_rows(summary, measures)), "",
                  "### Conditional (target among the candidates)", "",
                  markdown_table(system_rows(summary, measures, conditional=True)), ""]
        lines += ["### Difference from the backbone (95% bootstrap CIs over users)", "",
                  markdown_table(difference_rows(summary, measures)), ""]
        lines += fusion_lines(summary) + [""]
        if summary.diagnostics:
            lines += ["### Signal per task (covered test users)", "",
                      "AUC of the target against the other candidates under each score (0.5: no information), "
                      "with 95% bootstrap CIs.", "", markdown_table(auc_rows(summary)), "",
                      "### Listwise position bias", "", "Where the first pick by first-step identifier logits was "
                      "shown (candidates are shuffled: uniform is unbiased).", "",
                      markdown_table(position_rows(summary)), ""]
        listwise = listwise_rows(summary)
        if listwise:
            lines += ["### Listwise answers (generated, parsed)", "", markdown_table(listwise), ""]
        lines += ["### Cost per LLM pass", "", markdown_table(cost_rows(summary)), ""]
    plot_systems(results, folder / "systems.png")
    plot_position_bias(results, folder / "position_bias.png", header.m)
    lines += ["![metrics per system](systems.png)", "", "![listwise position bias](position_bias.png)", ""]
    with atomic_write(folder / "report.md") as fh:
        fh.write("\n".join(lines))
    return folder / "report.md"
