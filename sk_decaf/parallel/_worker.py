"""What runs inside a worker process: one loaded transformer per configuration, blocks of images through it.

A fitted :class:`~sk_decaf.DeCAFTransformer` pickles without its weights (a few kilobytes) and reloads them
when it is unpickled. :func:`pack` pickles it once on the client; :func:`worker_transformer` unpickles it
once per worker process and keeps it under a digest of those bytes, so every later task, and every later
job with the same fitted transformer, finds the network already loaded. Nothing here imports dask: the same
functions serve the Dask tasks and the local, in-process sharded extraction.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from .._images import ImageItem, ImageLoadError, Images, load_rgb

__all__ = ["pack", "worker_transformer", "transform_block", "has_on_error", "image_names", "FAILURES_WARNING"]

#: The message of the warning that lists bad items under ``on_error="nan"`` (the transformer's and ours),
#: silenced where the failures are reported otherwise.
FAILURES_WARNING = r"\d+ of \d+ images could not be"

#: Fitted transformers kept loaded per worker process (each holds a network).
_LOADED_SIZE = 2
_LOADED: OrderedDict[str, BaseEstimator] = OrderedDict()
_LOCK = threading.Lock()


def image_names(items: Iterable[Any], caller: str) -> list[str]:
    """``items`` as names (file paths or URLs), which each worker opens itself; in-memory images are refused.

    Only names travel to the workers, never pixels or encoded bytes: a task stays a few bytes per image
    whatever the images' size.
    """
    names = []
    for i, item in enumerate(items):
        name = os.fspath(item) if isinstance(item, os.PathLike) else item
        if not isinstance(name, str):
            raise ValueError(
                f"{caller} takes image file paths or URLs (str or path-like), which each worker opens itself, so "
                f"that only names travel to the workers; item {i} is a {type(item).__name__}. Featurise in-memory "
                "images with DeCAFTransformer.transform, or store them where the workers can read them (a shared "
                "disk, s3://, gs://, ...)."
            )
        names.append(str(name))
    return names


def has_on_error(transformer: BaseEstimator) -> bool:
    """Whether ``transformer`` has the ``on_error`` parameter (``"raise"`` or ``"nan"``)."""
    return "on_error" in transformer.get_params(deep=False)


def _is_fitted(transformer: BaseEstimator) -> bool:
    try:
        check_is_fitted(transformer)
    except Exception:
        return False
    return True


def pack(transformer: BaseEstimator, X: Images) -> tuple[BaseEstimator, bytes, str]:
    """Fit a clone of ``transformer`` when it is not fitted; return ``(fitted, payload, token)``.

    ``payload`` is the pickled fitted transformer (without weights), ``token`` a digest of it that names
    the loaded copy on every worker.
    """
    if not _is_fitted(transformer):
        transformer = clone(transformer).fit(X)  # resolves layers and feature sizes; reads no image
    payload = pickle.dumps(transformer, protocol=pickle.HIGHEST_PROTOCOL)
    return transformer, payload, hashlib.sha256(payload).hexdigest()[:32]


def worker_transformer(payload: bytes, token: str) -> BaseEstimator:
    """The transformer of ``payload``, unpickled (and its network loaded) once per process."""
    with _LOCK:  # held while loading: the threads of one worker wait for the one load
        transformer = _LOADED.get(token)
        if transformer is None:
            transformer = pickle.loads(payload)
            # A daemonic worker (a Dask nanny's) cannot start DataLoader processes: decode in the task,
            # the parallelism comes from the workers. No progress bars in workers.
            params: dict[str, Any] = {"verbose": False}
            if multiprocessing.current_process().daemon:
                params["n_jobs"] = 1
            transformer.set_params(**params)
            # Load the network now, under the lock: the threads of a worker then share one network instead of
            # building it at the same moment (random weights are drawn from torch's global generator).
            load = getattr(transformer, "feature_network", None)
            if callable(load):
                load()
            _LOADED[token] = transformer
            while len(_LOADED) > _LOADED_SIZE:
                _LOADED.popitem(last=False)
        else:
            _LOADED.move_to_end(token)
    return transformer


def _first_bad_item(items: Sequence[ImageItem], start: int) -> ImageLoadError | None:
    """The :class:`ImageLoadError` of the first item that cannot be loaded, numbered from ``start``."""
    for i, item in enumerate(items):
        try:
            load_rgb(item, start + i)
        except ImageLoadError as exc:
            return exc
    return None


def _name(item: ImageItem) -> str:
    return item if isinstance(item, str) else type(item).__name__


def _failure(item: ImageItem, index: int) -> str:
    try:
        load_rgb(item, index)
    except ImageLoadError as exc:
        return str(exc)
    return f"image {index}: could not be featurised (preprocessing failed)"


def transform_block(
    transformer: BaseEstimator, items: Sequence[ImageItem], start: int = 0
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Features of ``items``, which are images ``start, start + 1, ...`` of the whole input.

    Parameters
    ----------
    transformer : DeCAFTransformer
        Fitted.
    items : sequence of images
    start : int, default=0
        Index of ``items[0]`` in the whole input, for the records and errors.

    Returns
    -------
    features : ndarray of shape (len(items), n_features), float32
    failures : list of dict
        ``{"index", "item", "message"}`` of each item whose row is NaN (``on_error="nan"``), numbered in
        the whole input.

    Raises
    ------
    ValueError
        With ``on_error="raise"``: the error of the first bad item, numbered in the whole input (the block
        only knows its own positions, so the failing item is located again with its global index).
    """
    items = [os.fspath(item) if isinstance(item, os.PathLike) else item for item in items]
    failed: np.ndarray | list[int]
    try:
        features = transformer.transform(items)
    except ImageLoadError as exc:
        if start == 0:
            raise
        bad = _first_bad_item(items, start)
        if bad is not None:
            raise bad from None
        raise ValueError(f"images {start} to {start + len(items) - 1}: {exc}") from None
    failed = np.flatnonzero(np.isnan(features).all(axis=1)) if features.shape[1] else []
    failures = [
        {"index": int(start + i), "item": _name(items[i]), "message": _failure(items[i], start + i)} for i in failed
    ]
    return features, failures
