"""The serving tests' reranker, on the finished tiny run of tests/conftest.py."""

import pytest


@pytest.fixture(scope="session")
def reranker(tiny_run):
    from recranker.serve import Reranker

    return Reranker.load(tiny_run)
