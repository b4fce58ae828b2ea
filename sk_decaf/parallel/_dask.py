"""DeCAF features as a dask array, computed on a Dask cluster; each worker loads the network once.

Dask is imported inside the functions: ``import sk_decaf`` and ``import sk_decaf.parallel`` never import it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator

from .._images import ImageItem
from ._worker import image_names, pack, transform_block, worker_transformer

if TYPE_CHECKING:
    import dask.array
    from distributed import Client

__all__ = ["transform_dask", "get_client"]

_MISSING_DASK = "sk_decaf.parallel needs Dask: pip install 'sk-decaf[dask]' (dask[array], distributed, dask-ml)."


def _import_dask() -> tuple[Any, Any]:
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError(_MISSING_DASK) from exc
    return dask, da


def get_client(scheduler: str | os.PathLike[str] | None = None) -> Client:
    """The ``dask.distributed`` client to run on.

    Parameters
    ----------
    scheduler : str or path-like, default=None
        A scheduler address such as ``"tcp://10.0.0.5:8786"``, or a scheduler file ending in ``.json``
        (``dask-scheduler --scheduler-file``, dask-jobqueue, dask-mpi): a new client connected to it.
        ``None``: the current client.

    Returns
    -------
    client : distributed.Client

    Raises
    ------
    ValueError
        When ``scheduler`` is None and no client is running.
    """
    try:
        from distributed import Client
        from distributed import get_client as current_client
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(_MISSING_DASK) from exc
    if scheduler is not None:
        address = os.fspath(scheduler)
        if address.endswith(".json"):
            return Client(scheduler_file=address)
        return Client(address)
    try:
        return current_client()
    except ValueError:
        raise ValueError(
            "No Dask client is running: start one first, e.g. "
            "`from distributed import Client, LocalCluster; client = Client(LocalCluster())`, "
            "or pass a scheduler address."
        ) from None


def _run_block(payload: bytes, token: str, items: Sequence[ImageItem], start: int) -> np.ndarray:
    return transform_block(worker_transformer(payload, token), items, start)[0]


def _blocks(da: Any, paths: Any, chunksize: int) -> list[tuple[int, Any, int]]:
    """``(start, items)`` per block: the chunks of a 1-D dask array, else slices of ``chunksize``."""
    if isinstance(paths, da.Array):
        if paths.ndim != 1 or any(np.isnan(c) for c in paths.chunks[0]):
            raise ValueError("A dask array of paths must be 1-D with known chunk sizes.")
        starts = np.cumsum((0,) + paths.chunks[0])
        return list(zip(starts[:-1].tolist(), paths.to_delayed().ravel(), paths.chunks[0]))
    items = image_names(paths, "transform_dask")
    return [
        (start, items[start : start + chunksize], len(items[start : start + chunksize]))
        for start in range(0, len(items), chunksize)
    ]


def transform_dask(
    transformer: BaseEstimator,
    paths: Sequence[str | os.PathLike[str]] | dask.array.Array,
    *,
    chunksize: int = 256,
) -> dask.array.Array:
    """Featurise ``paths`` on the current Dask cluster; return a lazy dask array.

    The fitted transformer is pickled once, without its weights (a few kilobytes), and travels as one
    piece of data in the task graph. Each worker process unpickles it, and so loads the network, once,
    and keeps it for every later block and every later call with the same fitted transformer. Each block
    of ``chunksize`` images is one task; the result keeps the input order. Only the images' names travel
    in the task graph: each worker opens its own images, from its disk or through fsspec for URLs.

    Parameters
    ----------
    transformer : DeCAFTransformer
        Fitted or not (a clone is fitted here: no image is read, the layers and feature sizes are
        resolved). Its ``cache``, if any, must be a path that every worker can open on a local disk.
        Bad items follow its ``on_error``: an error naming the item's index in ``paths`` and its path, or
        a NaN row (the warning is then emitted in the worker's log).
    paths : sequence of str or path-like, or 1-D dask array of str
        Image files, readable by the workers under the same names: local paths (a shared disk) or URLs of
        any protocol fsspec knows (``s3://``, ``gs://``, ``https://`` ...; the workers need
        ``sk-decaf[fsspec]``, the protocol's package and its credentials, e.g. from their environment). A
        dask array keeps its own chunks. In-memory images (bytes, arrays) are refused: only names travel.
    chunksize : int, default=256
        Images per task (ignored for a dask array). Larger blocks amortise the per-task overhead; smaller
        ones balance the load and lose less work when a worker dies.

    Returns
    -------
    features : dask.array.Array of shape (len(paths), n_features_out_), float32
        Compute it on a ``distributed`` client (the current one, or ``client.compute``); without a client
        dask's threaded scheduler runs it in this process.

    See Also
    --------
    sk_decaf.parallel.extract_shards : Resumable extraction into ``.npy`` shards, locally or on a cluster.

    Examples
    --------
    >>> from sk_decaf import DeCAFTransformer
    >>> from sk_decaf.datasets import load_demo
    >>> from sk_decaf.parallel import transform_dask
    >>> features = transform_dask(DeCAFTransformer(engine="torch"), load_demo().paths[:8], chunksize=4)
    >>> features.shape, features.numblocks
    ((8, 1280), (2, 1))
    >>> features.compute().dtype  # on the current Client; here, without one, on dask's threads
    dtype('float32')
    """
    dask, da = _import_dask()
    if not isinstance(chunksize, (int, np.integer)) or chunksize < 1:
        raise ValueError(f"chunksize must be a positive int, got {chunksize!r}.")
    n = paths.shape[0] if isinstance(paths, da.Array) else len(paths)
    if n == 0:
        raise ValueError("transform_dask got no images.")
    fitted, payload, token = pack(transformer, ["unread.jpg"])
    # One graph node holds the weights-free pickle: Dask moves it to each worker once, not with every task.
    shipped = dask.delayed(payload, pure=True, name=f"sk-decaf-transformer-{token}")
    run = dask.delayed(_run_block, pure=False)
    blocks = [
        da.from_delayed(run(shipped, token, items, start), shape=(size, fitted.n_features_out_), dtype=np.float32)
        for start, items, size in _blocks(da, paths, chunksize)
    ]
    return da.concatenate(blocks, axis=0)
