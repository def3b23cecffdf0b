"""Datasets: loaders for each supported format, all returning a `Dataset`."""

from recranker.data.dataset import Dataset, Feedback

__all__ = ["Dataset", "Feedback"]
