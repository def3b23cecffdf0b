"""What a served run folder holds, read as it is.

A served run is an artefact: its tune/<variant>/config.yaml is the config the model was tuned
with, and the split, hint models and tuned model are read from their folders without recomputing
the stages' fingerprints (a later version of recranker may fingerprint them differently; the
study's own stages still do). Nothing here takes the run's lock, so a study may be running on it.
"""

from __future__ import annotations

from pathlib import Path

from recranker.artifacts import read_json
from recranker.config import StudyConfig, load_config, override
from recranker.errors import RecrankerError
from recranker.hints import HintModels
from recranker.ranking.backend import Backend
from recranker.ranking.engine import make_backend, ready_for_ranking, write_model_folder
from recranker.retrieval import load_retriever
from recranker.split import Split


def run_config(path: str | Path) -> tuple[StudyConfig, Path]:
    """(the study config, the tune folder) of a run folder with one finished tune stage, or of a
    tune/<variant> folder; the config's location is the run's as it is now."""
    path = Path(path)
    if (path / "config.yaml").is_file() and (path / "summary.json").is_file():
        folder = path
    else:
        found = sorted(p.parent for p in (path / "tune").glob("*/config.yaml") if (p.parent / "summary.json").is_file())
        if len(found) != 1:
            raise RecrankerError(f"{path}: needs a run folder with one finished tune stage, or a tune/<variant> "
                                 f"folder; found {len(found)} finished tune stages")
        folder = found[0]
    cfg = load_config(folder / "config.yaml")
    run_dir = folder.parent.parent
    return override(cfg, {"runs_dir": str(run_dir.parent), "name": run_dir.name}), folder


def run_weights(cfg: StudyConfig) -> tuple[float, float, float]:
    """The hybrid's weights of the run's first backbone: tuned on its validation users when the
    report has them, else `ranking.weights`."""
    summary = cfg.run_dir / "results" / "summary.json"
    if summary.is_file():
        backbones = read_json(summary).get("backbones", {})
        for name in cfg.retrieval.models:
            if "weights" in backbones.get(name, {}):
                return tuple(float(w) for w in backbones[name]["weights"])  # type: ignore[return-value]
    return tuple(cfg.ranking.weights)  # type: ignore[return-value]


def load_split(cfg: StudyConfig) -> Split:
    """The run's split (split/)."""
    folder = cfg.run_dir / "split"
    if not (folder / "_stage.json").is_file():
        raise RecrankerError(f"{cfg.run_dir}: no finished split")
    return Split.load(str(folder))


def load_hint_models(cfg: StudyConfig, split: Split) -> HintModels:
    """The hint models of the run's retrieval folders."""
    names = (cfg.prompts.hints.rating_model, cfg.prompts.hints.ranking_model)
    paths = [cfg.run_dir / "retrieval" / name / "model.pt" for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise RecrankerError(f"{cfg.run_dir}: the hint models are missing: {missing}")
    return HintModels(*[load_retriever(p, split) for p in paths])


def load_backend(cfg: StudyConfig, folder: Path, kind: str, server_url: str | None = None) -> Backend:
    """A backend answering with the tuned model of `folder`: "transformers" (in `ranking.dtype`),
    "vllm", or "openai" (the server at `server_url`, serving tune/<variant>/merged, the adapter
    merged into its base, written once)."""
    from recranker.tuning.model import load_merged

    r = cfg.ranking.model_copy(update={"backend": kind, **({"server_url": server_url} if server_url else {})})

    def model() -> tuple:
        tokenizer, merged = load_merged(folder, cfg.tuning.dtype)
        return tokenizer, ready_for_ranking(merged, r.dtype)

    return make_backend(r, model=model,
                        folder=lambda: write_model_folder(folder / "merged", lambda: load_merged(folder, cfg.tuning.dtype)))
