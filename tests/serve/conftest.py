"""The serving tests' reranker, on the finished tiny run of tests/conftest.py."""

import pytest


@pytest.fixture(scope="session")
def reranker(tiny_run):
    from recranker.serve import Reranker

    return Reranker.load(tiny_run)


@pytest.fixture(scope="session")
def tiny_run_generating(tmp_path_factory):
    """A finished tiny run whose hybrid reads the generated listwise order (`ranking.listwise: generate`)."""
    from recranker.cli.main import main
    from recranker.testing import tiny_study

    root = tmp_path_factory.mktemp("serve-generate")
    tiny_study(root, ranking={"arms": [], "bootstrap": 1, "weight_step": 0.5, "listwise": "generate",
                              "generate": True, "max_new_tokens": 6, "test_users": 8})
    assert main(["run", str(root / "study.yaml")]) == 0
    return root / "runs" / "tiny"
