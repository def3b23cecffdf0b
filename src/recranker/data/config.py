"""Settings of the data: which log to load and how ratings become feedback (DESIGN section 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from recranker.data.planted import PlantedConfig
from recranker.settings import Settings

Format = Literal["ml-100k", "ml-1m", "bookcrossing", "amazon", "recbole", "csv", "planted"]


class DataConfig(Settings):
    """Which log to load and how ratings become feedback."""

    format: Format = "ml-100k"
    path: Path | None = Field(None, description="file or folder; omitted: the fetched default copy")
    items_path: Path | None = Field(None, description="item table (csv format)")
    meta_path: Path | None = Field(None, description="item metadata (amazon format)")
    liked_min: float = Field(4.0, description="ratings at or above are liked")
    disliked_max: float = Field(2.0, description="ratings at or below are disliked")
    implicit: bool = Field(False, description="the log has no ratings: everything is liked")
    order: Literal["random", "file"] = Field(
        "random", description="bookcrossing (no timestamps): what stands for time in the leave-one-out, a seeded "
        "random order (random: a random leave-one-out) or the file's line order (file: within a user the file is "
        "sorted by ISBN)")
    order_seed: int = Field(0, description="seed of the random order (bookcrossing)")
    planted: PlantedConfig = Field(
        default_factory=PlantedConfig, description="planted: the generated control data's sizes and knobs "
        "(recranker.data.planted; permute_text: true is the negative control)")

    def loaded(self) -> dict[str, Any]:
        """The settings that shape the loaded data (an input of the split): all of them but the
        time order, which only Book-Crossing reads, and the planted data's knobs, which only the
        planted format reads (so adding either changed no other data's split)."""
        exclude = set() if self.format == "bookcrossing" else {"order", "order_seed"}
        if self.format != "planted":
            exclude.add("planted")
        return self.model_dump(mode="json", exclude=exclude)

    @field_validator("path")
    @classmethod
    def _planted_has_no_path(cls, value: Path | None, info: Any) -> Path | None:
        if value is not None and info.data.get("format") == "planted":
            raise ValueError("the planted format generates its data from data.planted and reads no path "
                             "(to read files written by recranker.data.planted.write_planted, use format csv)")
        return value

    @field_validator("disliked_max")
    @classmethod
    def _below_liked(cls, value: float, info: Any) -> float:
        liked = info.data.get("liked_min")
        if liked is not None and value >= liked:
            raise ValueError(f"must be below liked_min ({liked})")
        return value
