"""Settings of the instruction data and of prompt rendering (DESIGN sections 3-5).

`PromptsConfig` is the one spec of how prompts look, for training and for inference alike: the
template domain and folder, the history budget, the title length and the listwise answer's length
(`listwise_top`, which the hybrid's listwise utility uses too). The stages build every renderer
from it (`PromptsConfig.renderer`), so a training prompt and an inference prompt
of the same task and the same inputs are the same text.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from recranker.prompts.render import IDENTIFIERS, PromptRenderer
from recranker.prompts.templates import TASKS, Task, load_templates
from recranker.prompts.text import TokenCounter
from recranker.candidates import CandidateCounts
from recranker.settings import Settings


class HintConfig(Settings):
    """Which models give hints, and whether training hints are cross-fitted (both switchable for
    ablations)."""

    ADDED: ClassVar[frozenset[str]] = frozenset({"train_share"})

    enabled: bool = Field(True, description="show hints in the prompts")
    cross_fit: bool = Field(True, description="training hints from models that never saw the fold")
    train_share: float = Field(1.0, ge=0.0, le=1.0, description="share of the training instances shown their hint "
                               "(a seeded draw per instance; the rest are rendered as without hints): below 1, the "
                               "model cannot answer every training instance by copying the hint")
    rating_model: str = Field("biased_mf", description="backbone predicting ratings (pointwise hints)")
    ranking_model: str = Field("lightgcn", description="backbone ordering items (pairwise and listwise hints)")


DATASET_DOMAINS = {"ml-100k": "movies", "ml-1m": "movies", "bookcrossing": "books", "amazon": "products"}


class PromptsConfig(Settings):
    """How instruction data is built: tasks, templates, candidates per task, history budget,
    position shifting and hints."""

    #: settings that only shape the training data; every other one also shapes an inference prompt
    #: and is an input of the LLM ranking stages
    TRAINING_ONLY: ClassVar[dict] = {"tasks": True, "tokenizer": True, "folds": True, "seed": True,
                                     "shift_positions": True, "pointwise": True, "pairwise": True, "listwise": True,
                                     "candidate_source": True, "retrieved_share": True, "retrieved_depth": True,
                                     "hints": {"cross_fit": True, "train_share": True}}

    tasks: list[Task] = Field(default_factory=lambda: list(TASKS))
    domain: Literal["auto", "movies", "books", "products"] = Field(
        "auto", description="template domain; auto: from the data format (movies when unknown)")
    templates_dir: Path | None = Field(None, description="folder of <domain>/<task>.yaml replacing the packaged ones")
    tokenizer: str | None = Field("smollm2-135m", description="tokenizer for budgets and lengths; null: estimate")
    folds: int = Field(5, ge=2, le=20, description="k: held-out folds of training interactions (cross-fitting)")
    seed: int = 0
    shift_positions: bool = Field(True, description="shuffle history and candidates (off: time and hint order)")
    history_tokens: int = Field(256, ge=1, description="token budget of the history lines")
    history_items: int = Field(30, ge=1, description="most history lines")
    title_chars: int = Field(80, ge=8, description="longest title shown")
    pointwise: CandidateCounts = CandidateCounts(liked=1, neutral=1, disliked=1, negatives=0)
    pairwise: CandidateCounts = CandidateCounts(liked=1, neutral=0, disliked=1, negatives=1)
    listwise: CandidateCounts = CandidateCounts(liked=3, neutral=0, disliked=2, negatives=5)
    listwise_top: int = Field(5, ge=1, description="identifiers in a listwise answer (top-n)")
    RENAMED: ClassVar[dict[str, str]] = {"candidates": "renamed candidate_source (where training candidates come from)"}
    FINGERPRINT_NAMES: ClassVar[dict[str, str]] = {"candidate_source": "candidates"}

    candidate_source: Literal["sampled", "retrieved", "mixed"] = Field(
        "retrieved", description="training candidates: a held-out fold's ratings plus uniform negatives (sampled), "
        "the top of the ranking hint model fitted without the fold (retrieved, as at inference), or a share of each; "
        "a task's own `source` (e.g. listwise: {source: retrieved}) overrides it for that task")
    retrieved_share: float = Field(0.5, ge=0, le=1, description="mixed: share of instances with retrieved candidates")
    retrieved_depth: int | None = Field(None, ge=2, le=len(IDENTIFIERS),
                                        description="retrieved: items of the fold model's top list an instance "
                                        "draws from; null: as many as a listwise prompt shows (listwise's total)")
    hints: HintConfig = Field(default_factory=HintConfig)

    @model_validator(mode="after")
    def _sizes(self) -> "PromptsConfig":
        if not self.tasks:
            raise ValueError("tasks: give at least one of " + ", ".join(TASKS))
        p, q, r = self.pointwise, self.pairwise, self.listwise
        if p.liked + p.neutral + p.disliked == 0:
            raise ValueError("pointwise: needs rated candidates (liked, neutral or disliked > 0)")
        if q.liked < 1 or q.total < 2:
            raise ValueError("pairwise: needs liked >= 1 and at least one other candidate")
        if not 2 <= r.total <= len(IDENTIFIERS):
            raise ValueError(f"listwise: needs 2 to {len(IDENTIFIERS)} candidates, got {r.total}")
        if "listwise" in self.tasks and self.task_retrieved_fraction("listwise") > 0 and self.depth != r.total:
            raise ValueError(f"retrieved_depth ({self.depth}) must equal the listwise candidates ({r.total}): a "
                             "listwise instance shows the whole retrieved list, and one of either kind the same number")
        return self

    @property
    def depth(self) -> int:
        """The retrieved candidates' list length: `retrieved_depth`, or listwise's total."""
        return self.retrieved_depth if self.retrieved_depth is not None else self.listwise.total

    def source(self, task: str) -> str:
        """Where `task`'s training candidates come from: its own `source`, else `candidate_source`."""
        return getattr(self, task).source or self.candidate_source

    def task_retrieved_fraction(self, task: str) -> float:
        """Share of `task`'s training instances that draw retrieved candidates."""
        return {"sampled": 0.0, "retrieved": 1.0}.get(self.source(task), self.retrieved_share)

    @property
    def retrieved_fraction(self) -> float:
        """The largest share of training instances that draw retrieved candidates, over the tasks."""
        return max((self.task_retrieved_fraction(task) for task in self.tasks), default=0.0)

    def renderer(self, dataset, tokenizer, tasks, data_format: str) -> PromptRenderer:
        """The renderer of `tasks`' prompts over `dataset`'s items with these templates (for data
        of `data_format`) and history budget; token counts by `tokenizer`, estimated when None."""
        templates = load_templates(self.resolved_domain(data_format), self.templates_dir, tuple(tasks))
        return PromptRenderer(dataset, templates, counter=TokenCounter(tokenizer), history_tokens=self.history_tokens,
                              history_items=self.history_items, title_chars=self.title_chars,
                              listwise_top=self.listwise_top)

    def resolved_domain(self, data_format: str) -> str:
        """The template domain for data of `data_format`."""
        return DATASET_DOMAINS.get(data_format, "movies") if self.domain == "auto" else self.domain
