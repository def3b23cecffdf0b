"""`Settings`: the one base class of every config section (a study's and each library package's).

A section is a pydantic model: typed, validated when built and on assignment, and unknown keys are
errors (so a misspelt key is named instead of silently ignored). Sections whose values must never
change after they are built (a backbone's settings, candidate counts) add `frozen=True`.

Renamed keys. A section lists the keys of earlier versions in `RENAMED` (old key -> what replaced
it): a config that still uses one is an error naming the new key. Renaming is not a change of
inputs: `fingerprint_data` (what `recranker.artifacts.fingerprint` hashes) writes a renamed field
under its old name (`FINGERPRINT_NAMES`), so a stage finished before the rename is still reused.
`migrate` rewrites a config mapping written by an earlier version (a run folder's config.yaml).

Added keys. A field added after runs were written is listed in `ADDED`: dumps leave it out while it
is at its default, so the stages those runs finished (whose fingerprints hash the dumped settings)
are still reused, and a config that sets it is a new input.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SerializationInfo, SerializerFunctionWrapHandler, model_serializer, model_validator


class Settings(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: keys of earlier versions -> the message naming what replaced them
    RENAMED: ClassVar[dict[str, str]] = {}
    #: fields renamed since runs were written: new name -> the old name fingerprints keep
    FINGERPRINT_NAMES: ClassVar[dict[str, str]] = {}
    #: fields added since runs were written: left out of dumps while at their default
    ADDED: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _without_added_defaults(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        data = handler(self)
        for name in self.ADDED:
            if name in data and getattr(self, name) == type(self).model_fields[name].default:
                del data[name]
        return data

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, message in cls.RENAMED.items():
                if old in data:
                    raise ValueError(f"{old}: {message}")
        return data

    def fingerprint_data(self) -> dict[str, Any]:
        """The section as JSON data for fingerprints: `model_dump(mode="json")` with renamed fields
        under their old names (nested sections too)."""
        data = self.model_dump(mode="json")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Settings):
                data[name] = value.fingerprint_data()
            elif isinstance(value, dict) and any(isinstance(v, Settings) for v in value.values()):
                data[name] = {k: v.fingerprint_data() if isinstance(v, Settings) else data[name][k]
                              for k, v in value.items()}
        return {self.FINGERPRINT_NAMES.get(k, k): v for k, v in data.items()}


def rename_keys(data: dict[str, Any], renames: dict[str, str]) -> list[str]:
    """Rename dotted keys of a nested mapping in place (old dotted key -> new leaf name, e.g.
    {"prompts.candidates": "candidate_source"}); the renames done, as "old -> new"."""
    done = []
    for dotted, new in renames.items():
        *parents, leaf = dotted.split(".")
        node: Any = data
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and new not in node:
            node[new] = node.pop(leaf)
            done.append(f"{dotted} -> {new}")
    return done
