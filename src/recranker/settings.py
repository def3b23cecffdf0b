"""`Settings`: the one base class of every config section (a study's and each library package's).

A section is a pydantic model: typed, validated when built and on assignment, and unknown keys are
errors (so a misspelt key is named instead of silently ignored). Sections whose values must never
change after they are built (a backbone's settings, candidate counts) add `frozen=True`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
