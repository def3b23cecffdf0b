"""`FinishedRun`: the one reader of a finished run folder, for the server, the Python API and the
Ray workers.

It reads what the study's stages left (the split, the hint models, the tuned model, the systems
the results stage fitted) without taking the run's lock (a study may be running on it) and without
recomputing or tuning anything. Every stage it reads must be finished, and finished with the
inputs it expects: the fingerprints the caller gives (a Ray worker gets its driver's), else those
the results stage recorded in results/inputs.json when it wrote the results. A stage rebuilt
since, or a folder of another study, is one clear error naming the stage and what to run.

Its config is results/config.yaml (the config the results were computed with), else the tune
stage's tune/<variant>/config.yaml; either, written by an earlier version, is read with its
renamed keys rewritten (`recranker.config.migrate_config`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from recranker.artifacts import MARKER, read_json
from recranker.config import StudyConfig, load_config, override
from recranker.errors import RecrankerError
from recranker.hints import HintModels
from recranker.ranking.backend import Backend
from recranker.ranking.engine import make_backend, ready_for_ranking, write_model_folder
from recranker.ranking.systems import Hybrid, Systems
from recranker.split import Split

log = logging.getLogger(__name__)

#: what the results stage records of the stages it read (stage name -> inputs fingerprint)
INPUTS_FILE = "inputs.json"


class FinishedRun:
    """A finished run: its config (located where the folder is now), its tune folder, and the
    fingerprints its stages must have (`expected`, stage name -> inputs; empty: none checked)."""

    def __init__(self, cfg: StudyConfig, tune_folder: Path, expected: dict[str, str] | None = None) -> None:
        self.cfg, self.tune_folder, self.expected = cfg, tune_folder, dict(expected or {})

    # ----------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path) -> "FinishedRun":
        """The run of a run folder (with one finished tune stage), or of one of its tune/<variant>
        folders; checked against results/inputs.json when the results stage wrote one."""
        path = Path(path)
        if not path.is_dir():
            raise RecrankerError(f"{path}: no such run folder")
        if (path / "config.yaml").is_file() and (path / MARKER).is_file():
            tune_folder = path
        else:
            found = sorted(p.parent for p in (path / "tune").glob(f"*/{MARKER}") if (p.parent / "config.yaml").is_file())
            if len(found) != 1:
                raise RecrankerError(f"{path}: needs a run folder with one finished tune stage, or a tune/<variant> "
                                     f"folder; found {len(found)} finished tune stages")
            tune_folder = found[0]
        run_dir = tune_folder.parent.parent
        located = {"runs_dir": str(run_dir.parent), "name": run_dir.name}
        results = run_dir / "results"
        expected, cfg = {}, None
        if (results / INPUTS_FILE).is_file() and (results / "config.yaml").is_file():
            cfg = override(load_config(results / "config.yaml", migrate=True), located)
            expected = read_json(results / INPUTS_FILE)
        if cfg is None or cfg.tuning.variant != tune_folder.name:  # no results, or another tuning's
            cfg, expected = override(load_config(tune_folder / "config.yaml", migrate=True), located), {}
        run = cls(cfg, tune_folder, expected)
        run.require(f"tune/{cfg.tuning.variant}")
        if not expected:
            log.info("%s: no record of the stages its results were built from (no results yet, or written by an "
                     "earlier recranker): its stages are read as they are", run_dir)
        return run

    # ----------------------------------------------------------------------------- checks
    def require(self, name: str) -> Path:
        """The folder of stage `name`, finished (with the expected inputs when they are known);
        one error naming the stage otherwise."""
        folder = self.cfg.run_dir / name
        marker = folder / MARKER
        if not marker.is_file():
            raise RecrankerError(f"{self.cfg.run_dir}: the {name} stage has not finished; run the study "
                                 "(`recranker run`) first")
        want = self.expected.get(name)
        if want is not None and read_json(marker).get("inputs") != want:
            raise RecrankerError(f"{self.cfg.run_dir}: {name} finished with other inputs than expected (rebuilt "
                                 "since, or another study's); run `recranker run` on its config again")
        return folder

    # ----------------------------------------------------------------------------- reading
    def split(self) -> Split:
        """The run's split."""
        return Split.load(str(self.require("split")))

    def hint_models(self, split: Split) -> HintModels:
        """The hint models (the backbones fitted on the whole training set) the prompts' hints come from."""
        from recranker.retrieval import load_retriever

        hints = self.cfg.prompts.hints
        names = (hints.rating_model, hints.ranking_model)
        return HintModels(*[load_retriever(self.require(f"retrieval/{name}") / "model.pt", split) for name in names])

    def systems(self, backbone: str | None = None) -> Systems:
        """The systems the results stage fitted for `backbone` (None: the run's first), with the one
        it selected on validation; without results, the paper's hybrid with `ranking.weights`."""
        backbone = backbone or next(iter(self.cfg.retrieval.models))
        if backbone not in self.cfg.retrieval.models:
            raise RecrankerError(f"{self.cfg.run_dir}: no backbone {backbone!r}; the run has "
                                 f"{', '.join(self.cfg.retrieval.models)}")
        results = self.cfg.run_dir / "results"
        if (results / backbone / "systems.json").is_file():
            return Systems.load(results / backbone / "systems.json")
        summary = read_json(results / "summary.json") if (results / "summary.json").is_file() else {}
        weights = summary.get("backbones", {}).get(backbone, {}).get("weights")
        log.info("%s: no systems fitted for %s (no results, or results of an earlier recranker: `recranker report` "
                 "fits them); serving the paper's hybrid with %s", self.cfg.run_dir, backbone,
                 "the weights of results/summary.json" if weights else "ranking.weights")
        return Systems(Hybrid.paper(self.cfg.ranking, self.cfg.prompts.listwise_top, weights and tuple(weights)))

    def backend(self, kind: str = "transformers", server_url: str | None = None) -> Backend:
        """A backend answering with the tuned model: "transformers" (in `ranking.dtype`), "vllm", or
        "openai" (the server at `server_url`, serving tune/<variant>/merged: the adapter merged
        into its base, written once)."""
        from recranker.tuning.model import check_tuned_folder, load_merged

        check_tuned_folder(self.tune_folder)
        cfg, folder = self.cfg, self.tune_folder
        r = cfg.ranking.model_copy(update={"backend": kind, **({"server_url": server_url} if server_url else {})})

        def model() -> tuple:
            tokenizer, merged = load_merged(folder, cfg.tuning.dtype)
            return tokenizer, ready_for_ranking(merged, r.dtype)

        return make_backend(r, model=model, folder=lambda: write_model_folder(
            folder / "merged", lambda: load_merged(folder, cfg.tuning.dtype)))
