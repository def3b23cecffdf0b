"""Conventional retrieval models (backbones), one file each, behind one registry."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from recranker.errors import ConfigError
from recranker.retrieval.base import Retriever, RetrieverConfig, TorchRetriever
from recranker.split import Split

#: model name -> "module:Class" (imported on first use, so a model's file loads only when asked for)
RETRIEVERS: dict[str, str] = {
    "pop": "recranker.retrieval.popularity:Popularity",
    "bpr": "recranker.retrieval.bpr:BPRMF",
    "biased_mf": "recranker.retrieval.biased_mf:BiasedMF",
    "lightgcn": "recranker.retrieval.lightgcn:LightGCN",
    "sgl": "recranker.retrieval.sgl:SGL",
    "mixgcf": "recranker.retrieval.mixgcf:MixGCF",
    "sasrec": "recranker.retrieval.sasrec:SASRec",
    "cl4srec": "recranker.retrieval.cl4srec:CL4SRec",
    "bert4rec": "recranker.retrieval.bert4rec:BERT4Rec",
}


def retriever_class(name: str) -> type[Retriever]:
    """The class registered under `name`."""
    if name not in RETRIEVERS:
        raise ConfigError(f"unknown retrieval model {name!r}; known: {', '.join(sorted(RETRIEVERS))}")
    module, cls = RETRIEVERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_retriever(name: str, config: RetrieverConfig | dict | None = None) -> Retriever:
    """A fresh model `name` with `config` (a config object, a dict of settings, or defaults)."""
    cls = retriever_class(name)
    if isinstance(config, dict):
        config = cls.Config(**config)
    return cls(config)


def load_retriever(path: str | Path, split: Split) -> Retriever:
    """Load a model written by `Retriever.save`, ready to score users of `split`."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model = make_retriever(payload["name"], payload["config"])
    model.attach(split)
    if isinstance(model, TorchRetriever):
        model.build(split, torch.Generator().manual_seed(model.config.seed))
        model.module.to(model.device)  # as `fit` does: scoring moves its inputs to this device
    model.load_state(payload["state"])
    model.log = payload.get("log", [])
    return model


__all__ = [
    "RETRIEVERS",
    "Retriever",
    "RetrieverConfig",
    "TorchRetriever",
    "load_retriever",
    "make_retriever",
    "retriever_class",
]
