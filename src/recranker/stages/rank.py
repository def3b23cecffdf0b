"""The LLM ranking stages: one per (backbone, system, split stage), resumable by chunks of users.

    rank/<backbone>/<system>/<stage>/   outputs.npz (the LLM's answers on the candidates),
                                        summary.json (time, tokens); part-*.npz while it runs
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from recranker import assets
from recranker.artifacts import Stage, fingerprint, read_json, write_json
from recranker.config import StudyConfig
from recranker.errors import RecrankerError
from recranker.ranking.backend import Backend, TransformersBackend, Usage
from recranker.ranking.config import RankingConfig
from recranker.split import Split
from recranker.stages.base import model_signature, torch_device, writes_run
from recranker.stages.population import llm_candidates
from recranker.stages.prompts import full_hint_models, prompt_renderer, template_texts
from recranker.stages.retrieval import retrieval_stage
from recranker.stages.tune import run_tune, tune_stage

log = logging.getLogger(__name__)


#: version of the ranking outputs' layout and prompts: a change reruns earlier runs' ranking (2: inputs are
#: whole config sections; the listwise answer's length is prompts.listwise_top)
RANKING_FORMAT = 2


def ranking_systems(cfg: StudyConfig) -> list[str]:
    """The LLM passes the config asks for (tuned first, then no_hints and zero_shot baselines)."""
    return ["tuned"] + [s for s in ("no_hints", "zero_shot") if s in cfg.ranking.baselines]


def untuned_model(cfg: StudyConfig, system: str) -> str | None:
    """The model spec `system` ranks with: `ranking.model` when given, the base model for the
    zero-shot system; None: the run's tuned model."""
    if cfg.ranking.model is not None:
        return cfg.ranking.model
    return cfg.tuning.model if system == "zero_shot" else None


def ranking_model_inputs(cfg: StudyConfig, system: str) -> str:
    """What identifies the LLM of `system`: the tune stage's inputs, or the untuned model spec."""
    spec = untuned_model(cfg, system)
    return tune_stage(cfg).inputs if spec is None else fingerprint("model", spec, model_signature(spec))


def load_ranking_model(cfg: StudyConfig, system: str, *, train: bool = True) -> tuple:
    """(tokenizer, model) of `system` in `tuning.dtype` on the CPU, a tuned LoRA adapter merged
    into its base (tuning first when the stage is not done; with `train=False`, an error then:
    a reader that does not hold the run's lock), with a pad token."""
    from recranker.tuning.model import load_causal_lm, load_tuned

    spec = untuned_model(cfg, system)
    if spec is not None:
        tokenizer, model = load_causal_lm(spec, cfg.tuning.dtype)
    else:
        if train:
            run_tune(cfg)
        else:
            finished_tune(cfg)
        tokenizer, model = load_tuned(tune_stage(cfg).path, cfg.tuning.dtype)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def rank_stage(cfg: StudyConfig, backbone: str, system: str, stage: str) -> Stage:
    """LLM ranking of `backbone`'s candidates at `stage` by `system`. Its inputs are whole config
    sections less what cannot change the LLM's answers (`RankingConfig.NOT_ASKED`,
    `PromptsConfig.TRAINING_ONLY`), so a new setting is an input unless declared otherwise: a
    stale pass can never be read back. Also the templates, the model and the candidates."""
    return Stage(cfg.run_dir, f"rank/{backbone}/{system}/{stage}", inputs=fingerprint(
        asked_settings(cfg, system, stage), shown_settings(cfg, system), template_texts(cfg, cfg.ranked_tasks),
        ranking_model_inputs(cfg, system), retrieval_stage(cfg, backbone).inputs, RANKING_FORMAT))


def pass_ranking(cfg: StudyConfig, system: str, stage: str) -> RankingConfig:
    """The ranking settings of `system`'s passes over `stage`'s users. Only the tuned system's test
    rows read the bootstrap passes: every other pass makes one listwise pass. Validation passes
    serve only the hybrid's weights, which read one listwise pass (its generated order only when
    `ranking.listwise` is "generate"): they generate nothing else. The baselines' test passes still
    generate when asked (their position-bias histograms)."""
    r = cfg.ranking
    if stage == "test" and system == "tuned":
        return r
    update: dict = {"baselines": [b for b in r.baselines if b != "bootstrapping"]}
    if stage == "valid":
        update["generate"] = r.listwise == "generate"
    return r.model_copy(update=update)


def asked_settings(cfg: StudyConfig, system: str, stage: str) -> dict:
    """The ranking section as it shapes `system`'s requests over `stage`'s users: all of it but
    `NOT_ASKED`, with the tasks ranked and the listwise passes made."""
    r = pass_ranking(cfg, system, stage)
    asked = r.model_dump(mode="json", exclude=set(r.NOT_ASKED))
    asked.update(tasks=cfg.ranked_tasks, passes=r.bootstrap if "bootstrapping" in r.baselines else 1)
    return asked


def shown_settings(cfg: StudyConfig, system: str) -> dict:
    """The prompts section as it shapes an inference prompt: all of it but `TRAINING_ONLY`, hints
    off for the no-hints system."""
    p = cfg.prompts
    shown = p.model_dump(mode="json", exclude=p.TRAINING_ONLY)
    shown["hints"]["enabled"] = system != "no_hints" and p.hints.enabled
    return shown


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

    def get(self, cfg: StudyConfig, system: str) -> tuple:
        """(tokenizer, model) of `system`, in eval mode on the device, in `ranking.dtype`."""
        from recranker.ranking.backend import use_onednn_linears
        from recranker.tuning.model import DTYPES

        key = fingerprint(ranking_model_inputs(cfg, system), cfg.ranking.dtype)
        if key not in self._models:
            self._models.clear()  # one model in memory at a time
            tokenizer, model = load_ranking_model(cfg, system, train=self.train)
            model = model.to(device=torch_device(), dtype=DTYPES[cfg.ranking.dtype])
            if torch_device() == "cpu" and cfg.ranking.dtype == "float32":
                use_onednn_linears(model)
            self._models[key] = (tokenizer, model.eval())
        return self._models[key]

    def backend(self, cfg: StudyConfig, system: str) -> Backend:
        """The `ranking.backend` that answers with `system`'s model."""
        key = fingerprint(ranking_model_inputs(cfg, system), cfg.ranking.backend, cfg.ranking.dtype)
        if key not in self._backends:
            self._backends.clear()
            if cfg.ranking.backend == "vllm":
                from recranker.ranking.vllm_backend import VLLMBackend

                self._models.clear()
                backend: Backend = VLLMBackend(model_folder(cfg, system, train=self.train), dtype=cfg.ranking.dtype)
            elif cfg.ranking.backend == "openai":
                backend = openai_backend(cfg, system, train=self.train)
            else:
                tokenizer, model = self.get(cfg, system)
                backend = TransformersBackend(model, tokenizer, batch_tokens=cfg.ranking.batch_tokens,
                                              prefix_tokens=cfg.ranking.prefix_tokens)
            self._backends[key] = backend
        backend = self._backends[key]
        backend.usage = Usage()
        return backend


def openai_backend(cfg: StudyConfig, system: str, *, train: bool = True) -> Backend:
    """An `OpenAIBackend` asking `ranking.server_url` for `system`'s model (by default named by its
    model folder, which `model_folder` writes once: serve that folder)."""
    import os

    from recranker.ranking.openai_backend import OpenAIBackend

    r = cfg.ranking
    folder = model_folder(cfg, system, train=train)
    return OpenAIBackend(r.server_url, r.server_model or str(folder), assets.load_tokenizer(str(folder)),
                         api_key=os.environ.get("RECRANKER_SERVER_KEY"), top_logprobs=r.top_logprobs)


def model_folder(cfg: StudyConfig, system: str, *, train: bool = True) -> Path:
    """A folder holding `system`'s model as a plain transformers model (weights, config, tokenizer),
    for engines that load models by path (vLLM): the fetched default or a model folder as they
    are; a tuned LoRA adapter merged into its base once, into tune/<variant>/merged/; anything
    else (a GGUF file, a Hugging Face id) saved into rank/models/ once."""
    from recranker.artifacts import atomic_dir

    spec = untuned_model(cfg, system)
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
    if not (folder / "config.json").exists():
        tokenizer, model = load_ranking_model(cfg, system, train=train)
        with atomic_dir(folder) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return folder


@writes_run
def run_rank(cfg: StudyConfig, backbone: str, system: str, stage: str, *, split: Split, models: ModelCache,
             progress: bool = True):
    """The LLM's outputs on `backbone`'s candidates (`recranker.ranking.llm`), or the finished
    stage's; an interrupted stage goes on from the chunks of users it saved."""
    from recranker.ranking.llm import RankerOutputs

    stage_obj = rank_stage(cfg, backbone, system, stage)
    if stage_obj.done():
        log.info("rank/%s/%s/%s: done, reading %s", backbone, system, stage, stage_obj.path)
        return RankerOutputs.load(stage_obj.path / "outputs.npz"), read_json(stage_obj.path / "summary.json")
    candidates = llm_candidates(cfg, split, backbone, stage)
    folder = stage_obj.path
    resumed = stage_obj.resume_or_start()
    done = [RankerOutputs.load(p) for p in sorted(folder.glob("part-*.npz"))] if resumed else []
    seen = set(np.concatenate([d.users for d in done]).tolist()) if done else set()
    todo = np.array([u not in seen for u in candidates.users], dtype=bool)
    saved = itertools.count(len(done))
    started = time.perf_counter()
    usage = Usage().as_dict()
    if todo.any() or not done:  # no covered user at all still gives (empty) outputs
        part, usage = rank_users(cfg, system, stage, split, candidates.select(todo), models, progress=progress,
                                 on_chunk=lambda part: part.save(folder / f"part-{next(saved):05d}.npz"))
        done.append(part)
    seconds = time.perf_counter() - started
    outputs = RankerOutputs.concat(done)
    outputs = outputs.select(np.argsort(outputs.users))
    outputs.save(folder / "outputs.npz")
    for part in folder.glob("part-*.npz"):
        part.unlink()
    summary = {"backbone": backbone, "system": system, "stage": stage, "users": len(outputs), "resumed": resumed,
               "device": torch_device(), "backend": cfg.ranking.backend, "dtype": cfg.ranking.dtype, "workers": cfg.ranking.workers,
               **pass_cost(usage, int(todo.sum()), seconds)}
    write_json(folder / "summary.json", summary)
    stage_obj.finish({"seconds": seconds})
    return outputs, summary


def rank_users(cfg: StudyConfig, system: str, stage: str, split: Split, candidates, models: ModelCache, *,
               on_chunk, progress: bool = True):
    """(`RankerOutputs`, backend usage) of `system` on `candidates` at `stage`, chunk by chunk
    (`on_chunk` sees each): in this process, or over `ranking.workers` Ray workers
    (`recranker.stages.shard`)."""
    from recranker.ranking.llm import LLMRanker

    if cfg.ranking.workers > 1:
        from recranker.stages.shard import rank_sharded

        return rank_sharded(cfg, system, stage, candidates, on_chunk=on_chunk, progress=progress)
    hints = full_hint_models(cfg, split, progress=progress) if system != "no_hints" and cfg.prompts.hints.enabled else None
    backend = models.backend(cfg, system)
    ranker = LLMRanker(backend, prompt_renderer(cfg, split, backend.tokenizer, cfg.ranked_tasks), split, hints,
                       pass_ranking(cfg, system, stage))
    outputs = ranker.rank(candidates, stage, chunk=cfg.ranking.chunk_users, progress=progress, on_chunk=on_chunk)
    return outputs, backend.usage.as_dict()


def pass_cost(usage: dict, users: int, seconds: float) -> dict:
    """Time and tokens of an LLM pass over `users` users, in all and per user."""
    return {"users_this_run": users, "seconds": seconds, "usage": usage,
            "seconds_per_user": seconds / users if users else None,
            "tokens_per_user": {k: v / users for k, v in usage.items() if k.endswith("tokens")} if users else None}


class Pass(NamedTuple):
    """One LLM pass of a study: `system` ("tuned", "no_hints" or "zero_shot") over `backbone`'s
    candidates of the users evaluated at `split` ("valid" or "test"); its stage is
    rank/<backbone>/<system>/<split>/ (`rank_stage(cfg, *pass_)`)."""

    backbone: str
    system: str
    split: str


def ranking_passes(cfg: StudyConfig) -> list[Pass]:
    """Every LLM pass of the study, in the order they run (one model loaded at a time):
    validation users only where the hybrid's weights are tuned."""
    passes = []
    for system in ranking_systems(cfg):
        for backbone in cfg.retrieval.models:
            splits = ["valid", "test"] if system == "tuned" and cfg.ranking.tune_weights else ["test"]
            passes += [Pass(backbone, system, split) for split in splits]
    return passes
