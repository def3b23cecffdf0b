"""Serving a finished run: the Python API (`Reranker`) and the HTTP service (`recranker serve`)."""

from recranker.serve.requests import Limits, RankRequest, RequestError
from recranker.serve.reranker import RankedItem, RankResult, Reranker

__all__ = ["Limits", "RankRequest", "RankResult", "RankedItem", "Reranker", "RequestError"]
