"""A tiny synthetic dataset with real structure, for fast offline tests.

Users belong to taste groups; each group likes its own block of items and dislikes another's, so
a working recommender beats popularity on it. Timestamps increase per user, ratings are 1-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recranker.data.dataset import Dataset

GENRES = ("Drama", "Comedy", "Action", "Horror", "Romance", "Sci-Fi")


def synthetic_frames(
    n_users: int = 60, n_items: int = 80, n_groups: int = 4, per_user: int = 20, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw (log, items) frames as a loader would read them, string-typed, with `line` columns."""
    rng = np.random.default_rng(seed)
    block = n_items // n_groups
    rows = []
    for user in range(n_users):
        group = user % n_groups
        liked_block = np.arange(group * block, (group + 1) * block)
        disliked_block = np.arange(((group + 1) % n_groups) * block, ((group + 1) % n_groups + 1) * block)
        n_like = per_user * 3 // 4
        chosen = np.concatenate(
            [
                rng.choice(liked_block, size=min(n_like, block), replace=False),
                rng.choice(disliked_block, size=per_user - min(n_like, block), replace=False),
            ]
        )
        rng.shuffle(chosen)
        start = 1_000_000 + user * 10_000
        for step, item in enumerate(chosen):
            good = item in liked_block
            rating = int(rng.integers(4, 6)) if good else int(rng.integers(1, 3))
            rows.append((f"u{user}", f"i{item}", str(rating), str(start + 60 * step)))
    log = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    log["line"] = np.arange(2, len(log) + 2)
    items = pd.DataFrame(
        {
            "item": [f"i{i}" for i in range(n_items)],
            "title": [f"Movie {i}" for i in range(n_items)],
            "genres": [GENRES[(i // block) % len(GENRES)] for i in range(n_items)],
            "year": [str(1980 + i % 30) for i in range(n_items)],
        }
    )
    items["line"] = np.arange(2, n_items + 2)
    return log, items


def synthetic_dataset(**kwargs: int) -> Dataset:
    """The synthetic log as a `Dataset` (see `synthetic_frames` for the knobs)."""
    log, items = synthetic_frames(**kwargs)
    return Dataset.from_frames("synthetic", log, items, log_path="<synthetic>", items_path="<synthetic items>")


def tiny_study(root: Path, **sections: dict) -> Path:
    """`root/study.yaml`: a whole study on a synthetic log of 40 users and 40 items (written to
    `root` as log.csv and items.csv) with a tiny random LLM (`root/tiny-lm`), sized to run in
    seconds; `sections` replace the config's sections of the same name (e.g. `ranking={...}`)."""
    import yaml

    from recranker.testing.tiny_lm import tiny_causal_lm, tiny_tokenizer

    root = Path(root)
    log, items = synthetic_frames(n_users=40, n_items=40, per_user=16)
    log.drop(columns="line").to_csv(root / "log.csv", index=False)
    items.drop(columns="line").to_csv(root / "items.csv", index=False)
    tokenizer = tiny_tokenizer()
    tiny_causal_lm(tokenizer).save_pretrained(root / "tiny-lm")
    tokenizer.save_pretrained(root / "tiny-lm")
    config = {
        "name": "tiny", "runs_dir": str(root / "runs"),
        "data": {"format": "csv", "path": str(root / "log.csv"), "items_path": str(root / "items.csv")},
        "retrieval": {"candidates": 5, "models": {"bpr": {"epochs": 3}}},
        "evaluation": {"ks": [3, 5]},
        "sampling": {"strategy": "uniform", "instructions": 6},
        "prompts": {"folds": 2, "tokenizer": str(root / "tiny-lm"), "hints": {"ranking_model": "bpr"}},
        "tuning": {"model": str(root / "tiny-lm"), "max_steps": 2, "batch_size": 4},
        **sections,
    }
    (root / "study.yaml").write_text(yaml.safe_dump(config))
    return root / "study.yaml"
