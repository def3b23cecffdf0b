"""Settings of the retrieval stage: the backbones to train and the candidates they retrieve."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializeAsAny, ValidationError, field_validator

from recranker.retrieval import RETRIEVERS, RetrieverConfig, retriever_class
from recranker.settings import Settings


class RetrievalConfig(Settings):
    """Backbones to train (name -> settings) and how many candidates each retrieves."""

    models: dict[str, SerializeAsAny[RetrieverConfig]] = Field(
        default_factory=lambda: {"lightgcn": retriever_class("lightgcn").Config()}
    )
    candidates: int = Field(10, ge=1, le=1000, description="m: candidates per user for the ranker")

    @field_validator("models", mode="before")
    @classmethod
    def _typed_models(cls, value: Any) -> dict[str, RetrieverConfig]:
        if not isinstance(value, dict) or not value:
            raise ValueError("give at least one model, as {name: {settings}}")
        out, problems = {}, []
        for name, settings in value.items():
            if name not in RETRIEVERS:
                raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(RETRIEVERS))}")
            config_type = retriever_class(name).Config
            if isinstance(settings, config_type):
                out[name] = settings
                continue
            try:
                out[name] = config_type(**(settings or {}))
            except ValidationError as exc:  # keep the model's name in each error's key path
                problems += [{**error, "loc": (name, *error["loc"])} for error in exc.errors()]
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return out

    def model(self, name: str) -> RetrieverConfig:
        """Settings of model `name` (its defaults when the config does not list it)."""
        return self.models.get(name) or retriever_class(name).Config()
