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
    "Split",
    "leave_one_out",
]
__version__ = "0.1.0"
