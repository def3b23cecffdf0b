"""Tables for the terminal and the report (Markdown)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


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
    """One row per retrieval summary (as `study.run_retrieval` returns): test metrics and time."""
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
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from recranker.artifacts import atomic_write

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
    fig.tight_layout()
    with atomic_write(path, binary=True) as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
