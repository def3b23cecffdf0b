"""The LLMs a study ranks with: which model each arm uses (`recranker.arms`), loading it
(the tuned adapter merged) once per process, and the backend that answers with it."""

from __future__ import annotations

from pathlib import Path

from recranker import assets
from recranker.artifacts import fingerprint
from recranker.config import StudyConfig
from recranker.errors import RecrankerError
from recranker.arms import ARMS, Arm
from recranker.ranking.backend import Backend
from recranker.ranking.engine import make_backend, ready_for_ranking, write_model_folder
from recranker.stages.base import model_signature, torch_device
from recranker.stages.tune import run_tune, tune_stage


def untuned_model(cfg: StudyConfig, arm: Arm) -> str | None:
    """The model spec `arm` ranks with: `ranking.model` when given, the base model for an arm of
    the untuned model; None: the run's tuned model."""
    if cfg.ranking.model is not None:
        return cfg.ranking.model
    return None if ARMS[Arm(arm)].tuned_model else cfg.tuning.model


def ranking_model_inputs(cfg: StudyConfig, arm: Arm) -> str:
    """What identifies the LLM of `arm`: the tune stage's inputs, or the untuned model spec."""
    spec = untuned_model(cfg, arm)
    return tune_stage(cfg).inputs if spec is None else fingerprint("model", spec, model_signature(spec))


def load_ranking_model(cfg: StudyConfig, arm: Arm, *, train: bool = True) -> tuple:
    """(tokenizer, model) of `arm` in `tuning.dtype` on the CPU, a tuned LoRA adapter merged
    into its base (tuning first when the stage is not done; with `train=False`, an error then:
    a reader that does not hold the run's lock), with a pad token."""
    from recranker.tuning.model import load_causal_lm, load_merged

    spec = untuned_model(cfg, arm)
    if spec is not None:
        tokenizer, model = load_causal_lm(spec, cfg.tuning.dtype)
    else:
        if train:
            run_tune(cfg)
        else:
            finished_tune(cfg)
        tokenizer, model = load_merged(tune_stage(cfg).path, cfg.tuning.dtype)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def finished_tune(cfg: StudyConfig) -> Path:
    """The folder of the run's finished tune stage (read without the run's lock); an error when
    there is none."""
    stage = tune_stage(cfg)
    if not stage.done():
        raise RecrankerError(f"{cfg.run_dir}: no finished tune stage for this config ({stage.path}); run "
                             "`recranker tune` first")
    return stage.path


class ModelCache:
    """Loads each LLM of a run once (tuned: the adapter merged into the base, in float32, before the
    cast to `ranking.dtype`), and keeps one backend per model: a vLLM engine takes a minute to start.
    `train=False`: never tune (a reader without the run's lock: a Ray worker, a server)."""

    def __init__(self, *, train: bool = True) -> None:
        self.train = train
        self._models: dict[str, tuple] = {}
        self._backends: dict[str, Backend] = {}

    def get(self, cfg: StudyConfig, arm: Arm) -> tuple:
        """(tokenizer, model) of `arm`, in eval mode on the device, in `ranking.dtype`."""
        dtype = cfg.ranking.resolved_dtype(torch_device())
        key = fingerprint(ranking_model_inputs(cfg, arm), dtype)
        if key not in self._models:
            self._models.clear()  # one model in memory at a time
            tokenizer, model = load_ranking_model(cfg, arm, train=self.train)
            self._models[key] = (tokenizer, ready_for_ranking(model, dtype, torch_device()))
        return self._models[key]

    def backend(self, cfg: StudyConfig, arm: Arm) -> Backend:
        """The `ranking.backend` that answers with `arm`'s model (an engine that loads the model
        from a folder gets `model_folder`'s; the OpenAI backend asks for that folder's path)."""
        key = fingerprint(ranking_model_inputs(cfg, arm), cfg.ranking.backend, cfg.ranking.resolved_dtype(torch_device()))
        if key not in self._backends:
            self._backends.clear()
            if cfg.ranking.backend != "transformers":
                self._models.clear()
            self._backends[key] = make_backend(cfg.ranking, model=lambda: self.get(cfg, arm),
                                               folder=lambda: model_folder(cfg, arm, train=self.train))
        return self._backends[key]


def model_folder(cfg: StudyConfig, arm: Arm, *, train: bool = True) -> Path:
    """A folder holding `arm`'s model as a plain transformers model (weights, config, tokenizer),
    for engines that load models by path (vLLM): the fetched default or a model folder as they
    are; a tuned LoRA adapter merged into its base once, into tune/<variant>/merged/; anything
    else (a GGUF file, a Hugging Face id) saved into rank/models/ once."""
    spec = untuned_model(cfg, arm)
    if spec is not None:
        path = assets.model_path(spec)
        if isinstance(path, Path) and path.is_dir():
            return path
        folder = cfg.run_dir / "rank" / "models" / fingerprint(spec)[:16]
    else:
        if train:  # a stale merged/ goes with its stage when the tuning inputs changed
            run_tune(cfg)
        else:
            finished_tune(cfg)
        folder = tune_stage(cfg).path / "merged"
    return write_model_folder(folder, lambda: load_ranking_model(cfg, arm, train=train))
