"""A planted-signal dataset: a preference carried by the item text the prompts show, which a
collaborative model trained on exposures cannot see (DESIGN section 11).

The catalogue is cut into `shelves`; every title holds one of `words` marker words ("The Red
Harbor", "The Blue Falcon"), balanced within each shelf. Each user browses one shelf: the items
they interact with are drawn from that shelf by a popularity that has nothing to do with the word
(so *what a user sees* is collaborative structure that a backbone learns). Each user has a hidden
favourite word: an interaction whose title holds it is liked (rating 4 or 5), any other is not
(1, 2 or, rarely, 3). So *what a user likes* is written in the titles the prompts show - the
history shows the user's ratings beside the titles - and nowhere else: a backbone trained on every
interaction (`positives: interacted`) retrieves the user's shelf but orders it by exposure, blind
to the word. The split is the usual leave-one-out on liked items, so every target holds the
user's word, and so, by chance, do about 1/`words` of the other candidates.

Two pitfalls this avoids (DESIGN section 11): a preference a collaborative model trained on liked
items can learn (a colour shared by the users who like it) ends up in the candidates themselves;
and ratings that state the rule outright while every target is an arbitrary liked item carry no
signal to the targets.

Knobs: `signal` (the share of interactions whose liking follows the word; the rest are liked at
random at the same rate), `popularity` (how skewed exposure is within a shelf: the larger, the
more the backbone's candidates hold the targets), sizes, `shared_favourite` (every user favours
the same word, so the title alone tells, with no history to read: a check of the pipeline that
asks no in-context reasoning of the model) and `permute_text`, the negative control: the same
interactions with the titles permuted across items, so the text carries nothing.

    >>> log, items, truth = planted_frames(PlantedConfig(users=30, shelves=2, items_per_shelf=24))
    >>> sorted(log.columns), sorted(items.columns)
    (['item', 'line', 'rating', 'timestamp', 'user'], ['genres', 'item', 'line', 'title'])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from recranker.artifacts import atomic_write
from recranker.data.dataset import Dataset, Feedback
from recranker.settings import Settings


#: marker words (one token each in SmolLM2's vocabulary with a leading space)
WORDS = ("Red", "Blue", "Green", "Golden", "Silver", "Black", "White", "Purple", "Orange", "Pink", "Brown", "Grey")
#: the rest of a title: "The <word> <noun>"; nouns repeat across words, never within one word and shelf
NOUNS = (
    "Harbor", "Falcon", "River", "Garden", "Tower", "Mirror", "Lantern", "Forest", "Island", "Mountain",
    "Bridge", "Castle", "Desert", "Engine", "Feather", "Glacier", "Hammer", "Horizon", "Jungle", "Kingdom",
    "Ladder", "Meadow", "Needle", "Ocean", "Palace", "Quarry", "Rocket", "Saddle", "Temple", "Valley",
    "Wagon", "Anchor", "Beacon", "Canyon", "Dragon", "Empire", "Fortress", "Gateway", "Highway", "Voyage",
    "Journey", "Knight", "Legend", "Machine", "Nebula", "Orchard", "Pilgrim", "Prophet", "Rebel", "Shadow",
    "Thunder", "Village", "Warrior", "Window", "Cabin", "Circus", "Compass", "Crown", "Diamond", "Echo",
    "Fountain", "Ghost", "Giant", "Hunter", "Lagoon", "Lighthouse", "Marble", "Market", "Monster", "Oasis",
)


class PlantedConfig(Settings):
    """Sizes and knobs of a planted-signal dataset (see the module docstring)."""

    users: int = Field(400, ge=2, description="users (each browses one shelf)")
    shelves: int = Field(20, ge=1, description="shelves: groups of items browsed by the same users")
    items_per_shelf: int = Field(48, ge=2, description="items on each shelf")
    words: int = Field(6, ge=2, le=len(WORDS), description="marker words; each user favours one")
    per_user: int = Field(30, ge=3, description="interactions of each user (at most items_per_shelf)")
    signal: float = Field(1.0, ge=0.0, le=1.0, description="share of interactions whose liking follows the word")
    popularity: float = Field(1.0, ge=0.0, description="Zipf exponent of exposure within a shelf (0: uniform)")
    shared_favourite: bool = Field(
        False, description="every user favours the same word: the title alone tells what is liked, no history needs "
        "reading (the easiest text rule: a check of the pipeline, not of in-context reading)")
    permute_text: bool = Field(False, description="negative control: titles permuted across items")
    seed: int = 0

    @model_validator(mode="after")
    def _fits(self) -> "PlantedConfig":
        if self.per_user > self.items_per_shelf:
            raise ValueError(f"per_user ({self.per_user}) must be at most items_per_shelf ({self.items_per_shelf})")
        if -(-self.items_per_shelf // self.words) > len(NOUNS):
            raise ValueError(f"items_per_shelf / words must be at most {len(NOUNS)} (distinct titles per shelf)")
        return self


def item_words(cfg: PlantedConfig) -> np.ndarray:
    """(n_items,) the word index of each item: balanced within each shelf, in a seeded order."""
    rng = np.random.default_rng([cfg.seed, 1])
    per_shelf = [rng.permutation(np.arange(cfg.items_per_shelf) % cfg.words) for _ in range(cfg.shelves)]
    return np.concatenate(per_shelf).astype(np.int64)


def planted_frames(cfg: PlantedConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Raw (log, items, truth) frames: the log and item table as the CSV loader reads them
    (string-typed, with `line` columns), and per user the hidden `shelf` and `word`."""
    rng = np.random.default_rng([cfg.seed, 0])
    n_items = cfg.shelves * cfg.items_per_shelf
    words = item_words(cfg)
    # exposure popularity: a seeded Zipf weight per item, independent of its word
    ranks = np.concatenate([rng.permutation(cfg.items_per_shelf) for _ in range(cfg.shelves)])
    weight = (ranks + 1.0) ** -cfg.popularity
    base_rate = 1.0 / cfg.words
    rows, truth = [], []
    for user in range(cfg.users):
        shelf = int(rng.integers(cfg.shelves))
        favourite = int(rng.integers(cfg.words))  # drawn either way: the shared variant keeps the same exposures
        if cfg.shared_favourite:
            favourite = 0
        shelf_items = np.arange(shelf * cfg.items_per_shelf, (shelf + 1) * cfg.items_per_shelf)
        p = weight[shelf_items] / weight[shelf_items].sum()
        seen = rng.choice(shelf_items, size=cfg.per_user, replace=False, p=p)  # in time order
        follows = rng.random(cfg.per_user) < cfg.signal
        liked = np.where(follows, words[seen] == favourite, rng.random(cfg.per_user) < base_rate)
        ratings = np.where(liked, rng.integers(4, 6, cfg.per_user), rng.choice([1, 2, 2, 3], cfg.per_user))
        start = 900_000_000 + user * 100_000
        for step, (item, rating) in enumerate(zip(seen, ratings)):
            rows.append((f"u{user}", f"i{item}", str(int(rating)), str(start + 600 * step)))
        truth.append((f"u{user}", shelf, WORDS[favourite]))
    log = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    log["line"] = np.arange(2, len(log) + 2)
    titles = _titles(cfg, words)
    if cfg.permute_text:
        titles = titles[np.random.default_rng([cfg.seed, 2]).permutation(n_items)]
    items = pd.DataFrame({"item": [f"i{i}" for i in range(n_items)], "title": titles,
                          "genres": [f"Shelf {i // cfg.items_per_shelf}" for i in range(n_items)]})
    items["line"] = np.arange(2, n_items + 2)
    return log, items, pd.DataFrame(truth, columns=["user", "shelf", "word"])


def _titles(cfg: PlantedConfig, words: np.ndarray) -> np.ndarray:
    """'The <word> <noun>' for each item; a noun is used once per word and shelf."""
    titles = np.empty(len(words), dtype=object)
    for shelf in range(cfg.shelves):
        counts = np.zeros(cfg.words, dtype=np.int64)
        for item in range(shelf * cfg.items_per_shelf, (shelf + 1) * cfg.items_per_shelf):
            word = int(words[item])
            noun = NOUNS[(counts[word] + 7 * shelf) % len(NOUNS)]
            counts[word] += 1
            titles[item] = f"The {WORDS[word]} {noun}"
    return titles


def planted_dataset(cfg: PlantedConfig, feedback: Feedback | None = None) -> Dataset:
    """The planted log as a `Dataset` (what the CSV loader makes of `write_planted`'s files)."""
    log, items, _ = planted_frames(cfg)
    name = "planted-negative" if cfg.permute_text else "planted"
    return Dataset.from_frames(name, log, items, log_path="<planted log>", items_path="<planted items>",
                               feedback=feedback)


def write_planted(folder: str | Path, cfg: PlantedConfig) -> dict[str, Path]:
    """Write `log.csv`, `items.csv` (read by `load_dataset("csv", log, items_path=items)`) and
    `truth.csv` (each user's hidden shelf and word) into `folder`, atomically; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log, items, truth = planted_frames(cfg)
    paths = {"log": folder / "log.csv", "items": folder / "items.csv", "truth": folder / "truth.csv"}
    for key, frame in (("log", log), ("items", items), ("truth", truth)):
        with atomic_write(paths[key]) as fh:
            frame.drop(columns="line", errors="ignore").to_csv(fh, index=False)
    return paths
