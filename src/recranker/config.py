"""The typed, validated config of a study (DESIGN section 9): `StudyConfig` gathers the sections,
each defined in the `config` module of the package it configures (`data.config`,
`retrieval.config`, `metrics.config`, `prompts.config`, `tuning.config`, `ranking.config`; the
sampling settings in `sampling`), all on one base class (`recranker.settings.Settings`).

A study config is YAML; every key is checked (an unknown key or a bad value is a `ConfigError`
naming the file and the key path), and every CLI flag overrides it through `override`.

```yaml
name: ml-100k-demo
data: {format: ml-100k}            # path omitted: the fetched default copy
retrieval:
  candidates: 10
  models: {lightgcn: {}, sasrec: {epochs: 50}}
evaluation: {ks: [3, 5, 10, 20]}
sampling: {strategy: adaptive, instructions: 5000}
prompts: {tasks: [pointwise, pairwise, listwise], hints: {cross_fit: true}}
tuning: {model: smollm2-135m, limit: 200, epochs: 1, alro: {alpha: 0.1, beta: 0.01}}
ranking: {listwise: logits, bootstrap: 3, arms: [no_hints, zero_shot], tune_weights: true}
```
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from recranker.data.config import DataConfig
from recranker.errors import ConfigError
from recranker.metrics.config import EvaluationConfig
from recranker.prompts.config import PromptsConfig
from recranker.prompts.render import MAX_CANDIDATES
from recranker.ranking.config import RankingConfig
from recranker.retrieval import RETRIEVERS
from recranker.retrieval.config import RetrievalConfig
from recranker.arms import ARMS, BASELINE_ARMS, Arm
from recranker.sampling import SamplingConfig
from recranker.settings import Settings, rename_keys
from recranker.tuning.config import TuningConfig

if TYPE_CHECKING:
    from recranker.prompts.render import PromptRenderer
    from recranker.ranking.llm import LLMRanker
    from recranker.report import ReportHeader

log = logging.getLogger(__name__)


class StudyConfig(Settings):
    """A whole study: data, backbones, evaluation, and where the run directory lives."""

    name: str = Field("ml-100k", pattern=r"^[A-Za-z0-9._-]+$", description="run directory name")
    runs_dir: Path = Field(Path("runs"), description="parent of run directories")
    data: DataConfig = Field(default_factory=DataConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    ranking: RankingConfig = Field(default_factory=RankingConfig)

    @field_validator("prompts")
    @classmethod
    def _known_hint_models(cls, value: PromptsConfig) -> PromptsConfig:
        for key in ("rating_model", "ranking_model"):
            name = getattr(value.hints, key)
            if name not in RETRIEVERS:
                raise ValueError(f"hints.{key}: unknown model {name!r}; known: {', '.join(sorted(RETRIEVERS))}")
        if value.hints.rating_model != "biased_mf":
            raise ValueError("hints.rating_model: only biased_mf predicts ratings")
        return value

    @model_validator(mode="after")
    def _ranked_tasks_are_built(self) -> "StudyConfig":
        missing = [task for task in self.ranking.tasks or [] if task not in self.prompts.tasks]
        if missing and self.ranking.model is None:
            raise ValueError(f"ranking.tasks: {', '.join(missing)} not in prompts.tasks, so the tuned model never saw it")
        if "listwise" in self.ranked_tasks and self.retrieval.candidates > MAX_CANDIDATES:
            raise ValueError(f"retrieval.candidates: listwise ranking shows at most {MAX_CANDIDATES} candidates (A-Z)")
        return self

    @model_validator(mode="after")
    def _tuned_tasks_are_built(self) -> "StudyConfig":
        missing = [task for task in self.tuning.tasks or [] if task not in self.prompts.tasks]
        if missing:
            raise ValueError(f"tuning.tasks: {', '.join(missing)} not in prompts.tasks, so no instructions are built for it")
        return self

    @property
    def ranked_tasks(self) -> list[str]:
        """The tasks the LLM ranks with: ranking.tasks, else the tuned ones (tuning.tasks, else
        prompts.tasks)."""
        return list(self.ranking.tasks or self.tuning.tasks or self.prompts.tasks)

    @property
    def run_dir(self) -> Path:
        """runs_dir / name."""
        return self.runs_dir / self.name

    def renderer(self, dataset, tokenizer, tasks=None) -> "PromptRenderer":
        """The prompt renderer of `tasks` (None: the ranked tasks) over `dataset`'s items
        (`PromptsConfig.renderer`; token counts by `tokenizer`, estimated when None)."""
        return self.prompts.renderer(dataset, tokenizer, tasks or self.ranked_tasks, self.data.format)

    def shows_hints(self, arm: Arm) -> bool:
        """Whether `arm`'s prompts show hints: the arm shows them and `prompts.hints.enabled`."""
        return ARMS[Arm(arm)].hints and self.prompts.hints.enabled

    def llm_ranker(self, backend, split, hints, arm: Arm, target: str) -> "LLMRanker":
        """The `LLMRanker` of `arm`'s pass over `target`'s users ("valid" or "test"), answering with
        `backend`: the one path from config to ranker of the study, its Ray workers and the server.
        `hints` (the hint models fitted on the whole training set) are shown when the arm shows
        hints and `prompts.hints.enabled`."""
        from recranker.ranking.llm import LLMRanker

        shown = hints if self.shows_hints(arm) else None
        return LLMRanker(backend, self.renderer(split.dataset, backend.tokenizer), split, shown,
                         self.ranking.for_pass(arm, target))

    def report_header(self) -> "ReportHeader":
        """What the study's report says of it besides the results (`recranker.report.ReportHeader`)."""
        from recranker.report import ReportHeader

        untuned = self.ranking.model is not None
        return ReportHeader(self.name, self.run_dir, self.data.format, self.retrieval.candidates,
                            self.ranking.model or self.tuning.model, None if untuned else f"tune/{self.tuning.variant}")

    def to_yaml(self) -> str:
        """The config as YAML (round-trips through `parse_config`)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_config(data: dict[str, Any] | None, source: str = "<config>") -> StudyConfig:
    """Validate a config mapping; errors name `source` and the key path."""
    try:
        return StudyConfig(**(data or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


#: keys renamed since runs were written, as `migrate_config` rewrites them (dotted old key -> new name)
MIGRATED_KEYS = {"prompts.candidates": "candidate_source", "retrieval.models.mixgcf.candidates": "negatives"}


def migrate_config(data: dict[str, Any]) -> list[str]:
    """Rewrite, in place, a config mapping written by an earlier version (a run folder's
    config.yaml) into today's keys; the changes made, in words. A config a person writes gets an
    error naming the new key instead (`Settings.RENAMED`)."""
    done = rename_keys(data, MIGRATED_KEYS)
    ranking = data.get("ranking")
    if isinstance(ranking, dict) and "baselines" in ranking and "arms" not in ranking:
        baselines = ranking.pop("baselines") or []
        ranking["arms"] = [arm.value for arm in BASELINE_ARMS if arm.value in baselines]
        if "bootstrapping" not in baselines:
            ranking["bootstrap"] = 1
        done.append("ranking.baselines -> ranking.arms and ranking.bootstrap")
    return done


def load_config(path: str | Path, *, migrate: bool = False) -> StudyConfig:
    """Read and validate a YAML study config (`migrate`: one a run folder holds, written by an
    earlier version, its renamed keys rewritten with a log line)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                          "save the config as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys, got {type(data).__name__}")
    if migrate and data:
        changes = migrate_config(data)
        if changes:
            log.info("%s: written by an earlier recranker; read with %s", path, "; ".join(changes))
    return parse_config(data, str(path))


#: sections whose entries the user names (a backbone under retrieval.models): an override of a key
#: inside an entry the config does not list adds the entry with its defaults
NAMED_SECTIONS = {("retrieval", "models")}


def override(config: StudyConfig, changes: dict[str, Any]) -> StudyConfig:
    """A copy of `config` with dotted keys replaced, e.g. {"retrieval.candidates": 20}."""
    data = config.model_dump(mode="json")
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents):
            if key not in node and tuple(parents[:depth]) in NAMED_SECTIONS:
                node[key] = {}  # e.g. retrieval.models.bpr.epochs=3: bpr with its defaults, then epochs
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"override {dotted!r}: no section {key!r}")
            node = node[key]
        node[leaf] = value
    return parse_config(data, "<overrides>")


def _describe(exc: ValidationError, source: str) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "<top>"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{source}: {key}: {message}")
    return "\n".join(problems)


#: `recranker demo`: the whole pipeline on ML-100K with the default LLM, sized for a 2-core CPU
#: (about 15 minutes): LightGCN candidates, 2-fold cross-fitted hints, 40 instructions per task,
#: one epoch of LoRA with the ALRO losses, the hybrid with the paper's constants, the tuned hybrid
#: and the learned fusion fitted on a seeded sample of 150 validation users, evaluated on a seeded
#: sample of 300 test users (the LLM asked about those whose target is a candidate); listwise from
#: one pass (no generation); training candidates retrieved by the fold models.
DEMO_CONFIG = """
data: {format: ml-100k}
retrieval: {candidates: 10, models: {lightgcn: {}}}
evaluation: {ks: [3, 5]}
sampling: {strategy: adaptive, instructions: 40}
prompts: {folds: 2}
tuning: {epochs: 1}
ranking: {test_users: 300, valid_users: 150, tune_weights: true, arms: [], bootstrap: 1, generate: false}
"""


def demo_config(runs_dir: str | Path = "runs", name: str = "demo") -> StudyConfig:
    """The config of `recranker demo` (`DEMO_CONFIG`) in `runs_dir`/`name`."""
    data = yaml.safe_load(DEMO_CONFIG)
    data.update(name=name, runs_dir=str(runs_dir))
    return parse_config(data, "<demo config>")
