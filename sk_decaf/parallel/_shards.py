"""Resumable extraction into a folder of ``.npy`` shards and a JSON manifest, locally or on a Dask cluster.

Layout of ``out/``::

    manifest.json          what is being computed: paths, shard size, the transformer's configuration,
                           layers and feature names, extra metadata; ``complete`` and ``failures`` at the end
    shard-000000.npy       float32 rows [0, shard_size), written to a temporary name and renamed
    shard-000000.failures.json   only for a shard with NaN rows (``on_error="nan"``), written before its .npy

A shard exists completely or not at all (``os.replace`` is atomic), so a job killed at any moment resumes by
computing exactly the shards that are missing. Why ``.npy`` and not Zarr: no new dependency, every shard is
memory-mappable by numpy alone, one rename per shard is the whole commit protocol, and the shards of a
finished job concatenate into the same array that one uninterrupted ``transform`` returns.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import Bunch

from ._worker import FAILURES_WARNING, has_on_error, image_names, pack, transform_block, worker_transformer

if TYPE_CHECKING:
    from distributed import Client

#: ``(shard index, (first row, row after the last))`` of each shard to compute.
Todo = list[tuple[int, tuple[int, int]]]
#: ``save(shard index, features, failures)``, ``progress(shard index)``.
Save = Callable[[int, np.ndarray, list[dict[str, Any]]], None]
Progress = Callable[[int], None]

__all__ = ["extract_shards", "load_shards", "MANIFEST", "DEFAULT_SHARD_SIZE"]

MANIFEST = "manifest.json"
DEFAULT_SHARD_SIZE = 1024
_FORMAT = "sk_decaf.shards"
_VERSION = 1
_SHARD = re.compile(r"^shard-(\d{6})\.npy$")
#: Transformer parameters that change the features; the others (device, engine, batch_size, n_jobs,
#: verbose, cache ...) change how fast they come, not what they are.
_FEATURE_PARAMS = ("backbone", "layer", "weights", "pooling", "preprocess", "precision", "model_kwargs")


def _shard_name(k: int) -> str:
    return f"shard-{k:06d}.npy"


def _failures_name(k: int) -> str:
    return f"shard-{k:06d}.failures.json"


def _json_safe(value: object) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return type(value).__name__  # a torch module: its weights digest identifies it


def _configuration(fitted: BaseEstimator) -> dict[str, Any]:
    """What determines the features of a fitted transformer, as JSON."""
    params = fitted.get_params(deep=False)
    config = {name: _json_safe(params[name]) for name in _FEATURE_PARAMS if name in params}
    config.update(
        layers=list(fitted.layers_), n_features=int(fitted.n_features_out_), weights_digest=fitted.weights_digest_
    )
    if has_on_error(fitted):
        config["on_error"] = params["on_error"]
    return config


def _write_atomic(path: str, write: Callable[[IO[bytes]], object]) -> None:
    """``write(file)`` into a temporary file next to ``path``, then rename it over ``path``."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_json(path: str, obj: object) -> None:
    _write_atomic(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def _read_manifest(out: str) -> dict[str, Any]:
    path = os.path.join(out, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{out!r} holds no {MANIFEST}: it is not an sk_decaf shard folder.") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read {path!r}: {exc}") from None
    if manifest.get("format") != _FORMAT or manifest.get("version") != _VERSION:
        raise ValueError(f"{path!r} is not an sk_decaf shard manifest of version {_VERSION}.")
    return manifest


def _shard_ok(out: str, k: int, rows: int, n_features: int) -> bool:
    """A shard file is present with the expected shape and dtype."""
    try:
        arr = np.load(os.path.join(out, _shard_name(k)), mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.shape == (rows, n_features) and arr.dtype == np.float32


def _bounds(n: int, shard_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]


def _prepare(out: str, manifest: dict[str, Any], resume: bool) -> None:
    """Create ``out`` with ``manifest``, or check that a resumed ``out`` computes the same thing."""
    if os.path.exists(os.path.join(out, MANIFEST)):
        if not resume:
            raise ValueError(
                f"{out!r} already holds a shard manifest: pass resume=True (--resume) to "
                "continue that job, or choose a new output folder."
            )
        old = _read_manifest(out)
        for key in ("paths", "shard_size", "config"):
            if old.get(key) != manifest[key]:
                raise ValueError(
                    f"Cannot resume {out!r}: its {key} differ from this job's; use the same "
                    "images and settings, or a new output folder."
                )
        for name in os.listdir(out):  # half-written files of a killed run
            if name.startswith(".tmp-"):
                os.remove(os.path.join(out, name))
        return
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"{out!r} is a non-empty folder without a shard manifest; choose a new output folder.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{out!r} exists and is not a folder; a sharded output is a folder.")
    os.makedirs(out, exist_ok=True)
    _write_json(os.path.join(out, MANIFEST), manifest)


def _save_shard(out: str, k: int, features: np.ndarray, failures: list[dict[str, Any]]) -> None:
    failures_path = os.path.join(out, _failures_name(k))
    if failures:
        _write_json(failures_path, failures)  # before the .npy: a present shard has its failures
    elif os.path.exists(failures_path):
        os.remove(failures_path)  # left by an attempt that was killed before its .npy
    _write_atomic(os.path.join(out, _shard_name(k)), lambda f: np.save(f, np.asarray(features, np.float32)))


def _run_local(fitted: BaseEstimator, paths: list[str], todo: Todo, save: Save, progress: Progress) -> None:
    for k, (start, stop) in todo:
        with warnings.catch_warnings():  # one warning for the whole job, at the end
            warnings.filterwarnings("ignore", FAILURES_WARNING, UserWarning)
            features, failures = transform_block(fitted, paths[start:stop], start)
        save(k, features, failures)
        progress(k)


def _run_dask(
    client: Client, payload: bytes, token: str, paths: list[str], todo: Todo, save: Save, progress: Progress
) -> None:
    from distributed import as_completed

    [shipped] = client.scatter([payload], broadcast=True, hash=False)  # once per worker, not per task
    # A few tasks per worker thread in flight: the client holds few results, a kill loses few shards.
    window = max(2, 2 * sum(client.nthreads().values()))
    pending = iter(todo)
    futures: dict[Any, int] = {}

    def submit() -> Any:
        task = next(pending, None)
        if task is None:
            return None
        k, (start, stop) = task
        future = client.submit(_shard_task, shipped, token, paths[start:stop], start, pure=False)
        futures[future] = k
        return future

    queue = as_completed([f for f in (submit() for _ in range(window)) if f is not None])
    for future in queue:
        k = futures.pop(future)
        features, failures = future.result()
        save(k, features, failures)
        progress(k)
        del future
        nxt = submit()
        if nxt is not None:
            queue.add(nxt)


def _shard_task(payload: bytes, token: str, items: list[str], start: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    return transform_block(worker_transformer(payload, token), items, start)


def extract_shards(
    transformer: BaseEstimator,
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    shard_size: int | None = None,
    resume: bool = False,
    client: Client | None = None,
    metadata: dict[str, Any] | None = None,
    verbose: bool = False,
) -> Bunch:
    """Extract the features of ``paths`` into a folder of ``.npy`` shards; resume a killed job.

    Shard ``k`` holds the float32 rows of images ``k * shard_size`` to ``(k + 1) * shard_size - 1``. Each
    shard is written to a temporary file and renamed, so it exists completely or not at all. With
    ``resume=True`` a folder left by an interrupted job (killed, out of time, a bad image under
    ``on_error="raise"``) is continued: its manifest must describe the same paths and settings, present
    shards are kept as they are, and only the missing ones are computed.

    Parameters
    ----------
    transformer : DeCAFTransformer
        Fitted or not (a clone is then fitted: no image is read). Bad images follow its ``on_error``:
        ``"raise"`` stops the job with an error naming the image's index in ``paths`` and its path (the
        shards already written stay, so fix the image and resume); ``"nan"`` writes a NaN row and
        records the index, path and error in the manifest's ``failures``.
    paths : sequence of str or path-like
        Image files: local paths, or URLs of any protocol fsspec knows (``s3://``, ``gs://``, ``file://``
        ...), which each worker (or this process) opens itself; only the names travel to the workers and
        into the manifest.
    out : str or path-like
        The output folder, created if needed; it must be new or empty unless ``resume``.
    shard_size : int, default=None
        Images per shard: what a killed job loses at most per running task. ``None``: the resumed job's
        shard size, else 1024.
    resume : bool, default=False
        Continue the job whose manifest is in ``out``.
    client : distributed.Client, default=None
        Compute the shards as Dask tasks on this client (see :func:`get_client` to connect to a scheduler
        address); the client writes them, so ``out`` needs to be reachable from here only. ``None``
        computes them one after the other in this process.
    metadata : dict, default=None
        JSON-serialisable extras stored in the manifest and returned by :func:`load_shards` (e.g.
        ``target`` and ``target_names``).
    verbose : bool, default=False
        Print a line per written shard.

    Returns
    -------
    report : sklearn.utils.Bunch
        ``out``, ``n_shards``, ``computed`` (indices of the shards computed by this call), ``skipped``
        (present from an earlier run), ``failures`` (list of ``{"index", "item", "message"}``),
        ``n_features`` and ``seconds``.

    See Also
    --------
    load_shards : Read the finished folder back.
    transform_dask : Features as a lazy dask array, nothing written.

    Examples
    --------
    >>> import tempfile
    >>> from sk_decaf import DeCAFTransformer
    >>> from sk_decaf.datasets import load_demo
    >>> from sk_decaf.parallel import extract_shards, load_shards
    >>> paths = load_demo().paths[:6]
    >>> out = tempfile.mkdtemp() + "/features"
    >>> report = extract_shards(DeCAFTransformer(engine="torch"), paths, out, shard_size=4)
    >>> report.n_shards, report.computed
    (2, [0, 1])
    >>> extract_shards(DeCAFTransformer(engine="torch"), paths, out, shard_size=4, resume=True).computed
    []
    >>> load_shards(out).features.shape
    (6, 1280)
    """
    out = os.fspath(out)
    if shard_size is None:  # a resumed job keeps its shard size
        shard_size = (
            _read_manifest(out)["shard_size"]
            if resume and os.path.exists(os.path.join(out, MANIFEST))
            else DEFAULT_SHARD_SIZE
        )
    if not isinstance(shard_size, (int, np.integer)) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive int, got {shard_size!r}.")
    files = image_names(paths, "extract_shards")
    if not files:
        raise ValueError("extract_shards got no images.")
    start_time = time.perf_counter()
    fitted, payload, token = pack(transformer, files)
    manifest = {
        "format": _FORMAT,
        "version": _VERSION,
        "complete": False,
        "n_images": len(files),
        "shard_size": int(shard_size),
        "config": _configuration(fitted),
        "feature_names": [str(f) for f in fitted.get_feature_names_out()],
        "metadata": _json_safe(metadata or {}),
        "paths": files,
    }
    _prepare(out, manifest, resume)
    bounds = _bounds(len(files), shard_size)
    n_features = fitted.n_features_out_
    skipped = [k for k, (a, b) in enumerate(bounds) if _shard_ok(out, k, b - a, n_features)]
    todo = [(k, ab) for k, ab in enumerate(bounds) if k not in set(skipped)]

    computed: list[int] = []

    def progress(k: int) -> None:
        computed.append(k)
        if verbose:
            print(f"shard {k + 1}/{len(bounds)} written ({len(computed)} of {len(todo)} to compute)", flush=True)

    save = functools.partial(_save_shard, out)
    if client is None:
        _run_local(fitted, files, todo, save, progress)
    else:
        _run_dask(client, payload, token, files, todo, save, progress)

    failures: list[dict[str, Any]] = []
    for k in range(len(bounds)):
        path = os.path.join(out, _failures_name(k))
        if os.path.exists(path):
            with open(path) as f:
                failures.extend(json.load(f))
    manifest = dict(_read_manifest(out), complete=True, failures=failures)
    _write_json(os.path.join(out, MANIFEST), manifest)
    if failures:
        warnings.warn(
            f"{len(failures)} of {len(files)} images could not be featurised; their rows are NaN and "
            f"they are listed under 'failures' in {os.path.join(out, MANIFEST)}.",
            UserWarning,
            stacklevel=2,
        )
    return Bunch(
        out=out,
        n_shards=len(bounds),
        computed=sorted(computed),
        skipped=skipped,
        failures=failures,
        n_features=n_features,
        seconds=time.perf_counter() - start_time,
    )


def load_shards(out: str | os.PathLike[str], *, mmap_mode: Literal["r"] | None = None) -> Bunch:
    """Read a finished shard folder written by :func:`extract_shards`.

    Parameters
    ----------
    out : str or path-like
        The folder.
    mmap_mode : {None, "r"}, default=None
        ``"r"``: ``shards`` are read-only memory maps and ``features`` is not assembled (``None``), for
        outputs larger than memory.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``features`` (float32, one row per path, NaN rows for failures), ``shards`` (list of arrays),
        ``paths``, ``feature_names``, ``layers``, ``failures``, ``config``, and the ``metadata`` keys.

    Raises
    ------
    ValueError
        If the job is not complete (resume it) or a shard is missing or malformed.
    """
    out = os.fspath(out)
    manifest = _read_manifest(out)
    bounds = _bounds(manifest["n_images"], manifest["shard_size"])
    if not manifest.get("complete"):
        done = sum(_shard_ok(out, k, b - a, manifest["config"]["n_features"]) for k, (a, b) in enumerate(bounds))
        raise ValueError(
            f"{out!r} is an unfinished extraction ({done} of {len(bounds)} shards); resume it "
            "(extract_shards(..., resume=True) or sk-decaf extract --resume)."
        )
    shards = []
    for k, (a, b) in enumerate(bounds):
        arr = np.load(os.path.join(out, _shard_name(k)), mmap_mode=mmap_mode)
        if arr.shape != (b - a, manifest["config"]["n_features"]) or arr.dtype != np.float32:
            raise ValueError(
                f"{os.path.join(out, _shard_name(k))!r} is malformed: shape {arr.shape}, dtype {arr.dtype}."
            )
        shards.append(arr)
    features = np.concatenate(shards) if mmap_mode is None else None
    return Bunch(
        features=features,
        shards=shards,
        paths=manifest["paths"],
        feature_names=np.asarray(manifest["feature_names"], dtype=object),
        layers=manifest["config"]["layers"],
        failures=manifest.get("failures", []),
        config=manifest["config"],
        **manifest.get("metadata", {}),
    )
