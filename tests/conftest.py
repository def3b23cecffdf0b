"""Test-wide settings and the shared fixtures of the instruction-data tests.

- One torch thread: tiny tensors run faster without thread hand-offs.
- Hermetic: every test not marked `slow` sees an empty `$RECRANKER_HOME`, so no test can pass only
  because this machine happens to have the default data or model fetched; `slow` tests see the
  real cache and skip themselves when what they need is absent. Hugging Face libraries are kept
  offline.
- The synthetic split, its training pools and quickly fitted hint models (built once per session,
  on first use); a finished tiny run (`tiny_run`) for the tests of what reads a run.
"""

import os
import subprocess
import sys

import pytest
import torch

from recranker.candidates import TrainingPools
from recranker.hints import HintModels, fit_fold_models
from recranker.prompts.render import PromptRenderer
from recranker.prompts.templates import load_templates
from recranker.prompts.text import TokenCounter
from recranker.retrieval import make_retriever
from recranker.testing import tiny_study, tiny_tokenizer
from recranker.testing.retrievers import synthetic_split

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def empty_home(tmp_path_factory):
    """A `$RECRANKER_HOME` with nothing fetched."""
    return tmp_path_factory.mktemp("empty-recranker-home")


@pytest.fixture(autouse=True)
def _nothing_fetched(request, empty_home, monkeypatch) -> None:
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("RECRANKER_HOME", str(empty_home))

FOLDS = 3
FAST = {"biased_mf": {"epochs": 5}, "lightgcn": {"epochs": 10, "eval_every": 5}}


HOLDER = """
import sys
from recranker.artifacts import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture()
def hold():
    """Starts a process that holds a run directory's lock until a line reaches its stdin (or it is
    killed); `hold(run_dir)` returns it once it holds the lock. Killed at teardown."""
    procs = []

    def start(run_dir):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


@pytest.fixture(scope="session")
def split():
    return synthetic_split()


@pytest.fixture(scope="session")
def pools(split):
    return TrainingPools(split, FOLDS, seed=0)


@pytest.fixture(scope="session")
def hint_models(split, pools):
    full = [make_retriever(name, FAST[name]).fit(split, progress=False) for name in ("biased_mf", "lightgcn")]
    folds = [fit_fold_models(split, pools, name, make_retriever(name, FAST[name]).config, progress=False)
             for name in ("biased_mf", "lightgcn")]
    return HintModels(*full, *folds)


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture()
def renderer(split, tokenizer):
    return PromptRenderer(split.dataset, load_templates("movies"), counter=TokenCounter(tokenizer),
                          history_tokens=120, history_items=30)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The folder of a finished `recranker run` on 40 synthetic users (items i0..i39, users u0..u39)."""
    root = tmp_path_factory.mktemp("serve")
    tiny_study(root, ranking={"arms": [], "bootstrap": 1, "weight_step": 0.5, "generate": False, "test_users": 8,
                              "valid_users": 8})
    from recranker.cli.main import main

    assert main(["run", str(root / "study.yaml")]) == 0
    return root / "runs" / "tiny"
