"""recranker: instruction-tune an open LLM as the ranker of a top-k recommender."""

from recranker.data.dataset import Dataset
from recranker.errors import ConfigError, DataError, RecrankerError
from recranker.split import Split, leave_one_out
from recranker.types import Rankings

__all__ = [
    "ConfigError",
    "DataError",
    "Dataset",
    "Rankings",
    "RecrankerError",
    "Reranker",
    "Split",
    "leave_one_out",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    """`recranker.Reranker` (`recranker.serve.Reranker`), imported on first use: the serving path
    loads torch and transformers, which `import recranker` alone should not."""
    if name == "Reranker":
        from recranker.serve.reranker import Reranker

        return Reranker
    raise AttributeError(f"module 'recranker' has no attribute {name!r}")
