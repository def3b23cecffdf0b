"""Errors that recranker raises on bad input, each with one clear message."""

from __future__ import annotations

from pathlib import Path


class RecrankerError(Exception):
    """Base class of every error recranker raises on purpose."""


class DataError(RecrankerError, ValueError):
    """Bad input data: names the file, the line (1-based, counting the header) and the problem.

    >>> str(DataError("ratings.csv", "rating 'x' is not a number", line=7))
    "ratings.csv, line 7: rating 'x' is not a number"
    """

    def __init__(self, path: str | Path | None, problem: str, line: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.problem = problem
        where = self.path or "<data>"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {problem}")


class ConfigError(RecrankerError, ValueError):
    """A study config with a wrong key or value."""
