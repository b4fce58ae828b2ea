"""One ``DeCAFTransformer.transform`` call: cache look-ups, forward passes and bad items, in one state object.

:class:`Extraction` holds what a call finds out as it goes (content keys, bad items, the rows still to compute,
duplicates, counters), so the steps of a call read and write one object instead of relaying it through their
arguments. Rows are written into the caller's output array as they come, and every good row of a batch is
kept (and cached) before an error is raised, so alignment is never lost.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._cache import ActivationCache
from .._images import ImageLoadError, check_items, content_key, describe
from .._progress import progress_bar
from ._runtime import FittedDeCAF, Resolution

__all__ = ["Extraction"]

#: Images looked up in the cache at a time: bounds the memory of a transform to the output array.
CACHE_CHUNK = 2048


class Extraction:
    """The state of one transform call over ``items`` into ``result`` (an ``(n, n_features_out_)`` array).

    Parameters
    ----------
    est : DeCAFTransformer
        The fitted transformer: its layers, feature sizes, resolution and parameters.
    items : sequence of images
    result : ndarray
        Where the rows go (memory or a memory-mapped file).
    """

    def __init__(self, est: FittedDeCAF, items: Sequence[Any] | np.ndarray, result: np.ndarray) -> None:
        self.est = est
        self.items = items
        self.result = result
        self.failures: dict[int, str] | None = (
            {} if est.on_error == "nan" else None
        )  # {index: message}; None raises at once
        self.keys: list[str | None] = [None] * len(items)  # content key of each good item, when there is a cache
        self.todo: list[int] = []  # indices that need the network
        self.copies: dict[int, int] = {}  # {index: earlier index with the same content}
        self.hits = 0
        self.computed = 0
        self.columns: dict[str, slice] = {}
        start = 0
        for name in est.layers_:
            self.columns[name] = slice(start, start + est.feature_dims_[name])
            start += est.feature_dims_[name]

    def fail(self, index: int, error: Exception) -> None:
        """Record a bad item, or raise its error with ``on_error="raise"``."""
        if self.failures is None:
            raise error if isinstance(error, ImageLoadError) else ImageLoadError(str(error))
        self.failures[index] = str(error)

    def run(self) -> np.ndarray:
        """Fill every row of ``result``: from the cache, from the network, or NaN for bad items."""
        check_items(self.items, self.failures)
        resolution = self.est._resolution
        cache = ActivationCache(self.est.cache, self.est.cache_max_bytes) if self.est.cache is not None else None
        try:
            if cache is None:
                self.todo = [i for i in range(len(self.items)) if i not in (self.failures or {})]
            else:
                self.read_cache(cache, resolution.key)
            self.compute(cache, resolution)
            self.copy_duplicates()
            if cache is not None:
                cache.record(resolution.key, hits=self.hits, computed=self.computed, description=resolution.description)
                cache.evict()
        finally:
            if cache is not None:
                cache.close()
        self.report_failures()
        return self.result

    def read_cache(self, cache: ActivationCache, key: str) -> None:
        """Copy cached rows into ``result`` chunk by chunk (flat memory); queue the misses, each content once."""
        dims = {name: self.est.feature_dims_[name] for name in self.est.layers_}
        first: dict[str, int] = {}
        for start in range(0, len(self.items), CACHE_CHUNK):
            chunk = range(start, min(start + CACHE_CHUNK, len(self.items)))
            for i in chunk:
                if self.failures is None or i not in self.failures:
                    try:
                        self.keys[i] = content_key(self.items[i], i)
                    except ImageLoadError as exc:
                        self.fail(i, exc)
            hits = cache.get(key, [k for k in (self.keys[i] for i in chunk) if k is not None], dims)
            for i in chunk:
                k = self.keys[i]
                if k is None:
                    continue
                if k in hits:
                    self.hits += 1
                    for name, cols in self.columns.items():
                        self.result[i, cols] = hits[k][name]
                elif k in first:  # the same image earlier in X: computed once, copied
                    self.copies[i] = first[k]
                else:
                    first[k] = i
                    self.todo.append(i)

    def compute(self, cache: ActivationCache | None, resolution: Resolution) -> None:
        """Run the network over the queued rows; store every layer it computes in the cache."""
        if not self.todo:
            return
        est = self.est
        featurizer = est._network.get(est)
        layers = featurizer.layers
        with progress_bar(len(self.todo), desc="DeCAF", unit="img", disable=not est.verbose) as progress:
            batches = featurizer.run(
                self.items, self.todo, batch_size=est.batch_size, n_jobs=est.n_jobs, progress=progress
            )
            for idx, outputs, errors in batches:
                self.computed += len(idx)
                if len(idx):
                    by_layer = dict(zip(layers, outputs))
                    for name, cols in self.columns.items():
                        self.result[idx, cols] = by_layer[name]
                    if cache is not None:
                        rows = [(self.keys[i], name, by_layer[name][r]) for r, i in enumerate(idx) for name in layers]
                        cache.put(resolution.key, rows, description=resolution.description)
                for index, message in errors:
                    self.fail(index, ImageLoadError(message))

    def copy_duplicates(self) -> None:
        for dst, src in self.copies.items():
            self.result[dst] = self.result[src]
            if self.failures is not None and src in self.failures:
                self.failures[dst] = f"{describe(self.items[dst], dst)}: same content as {self.failures[src]}"

    def report_failures(self) -> None:
        """NaN rows and one warning for the bad items (``on_error="nan"``)."""
        if not self.failures:
            return
        self.result[sorted(self.failures)] = np.nan
        warnings.warn(
            f"{len(self.failures)} of {len(self.items)} images could not be read; their rows are NaN "
            f"(on_error='nan'):\n" + "\n".join(self.failures[i] for i in sorted(self.failures)),
            UserWarning,
            stacklevel=4,
        )
