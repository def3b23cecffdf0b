"""Serving a finished run: the Python API (`Reranker`) and the HTTP service (`recranker serve`)."""

from recranker.serve.reranker import Limits, RankedItem, RankRequest, RankResult, Reranker, RequestError

__all__ = ["Limits", "RankRequest", "RankResult", "RankedItem", "Reranker", "RequestError"]
