"""``sk-decaf extract DATA -o OUT``: the features of images, in one ``.npz`` file or in resumable shards.

``DATA`` is a ``<class>/<image>`` folder, on the local disk or under a URL prefix (``s3://bucket/photos``,
``memory://...``, ``file:///...``: listed with fsspec), or a text file listing images (paths or URLs), one per
line, each optionally followed by a tab and its class. Without sharding options the output is one ``.npz``
file, written to a temporary name and renamed when complete, so a failed run leaves no file that looks valid.
With ``--shard-size``, ``--resume`` or ``--scheduler`` the output is a folder of ``.npy`` shards and a manifest
(:func:`sk_decaf.parallel.extract_shards`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ._common import Subparsers, add_backbone_options, parse_layer, transformer_kwargs

if TYPE_CHECKING:
    from sklearn.utils import Bunch

    from ..transformers import DeCAFTransformer


def add_extract_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "extract",
        help="write the features of a <class>/<image> folder, a URL prefix or a list of images to an .npz "
        "file or shards",
        description="Extract DeCAF features of every image of DATA and write features, paths, target and "
        "target_names to an .npz file, or, with --shard-size/--resume/--scheduler, to a folder of .npy "
        "shards and a manifest.json that a killed job resumes. DATA is a folder DATA/<class>/<image>, "
        "locally or under a URL prefix listed with fsspec (s3://bucket/photos, gs://..., file:///...; "
        "needs sk-decaf[fsspec]), or a text file (local or a URL) listing one image path or URL per "
        "line (relative paths in the listing's folder), each optionally followed by a tab and its class "
        "(unlabelled images get target -1).",
    )
    p.add_argument(
        "data",
        metavar="DATA",
        help="image folder (one sub-folder per class), URL prefix of such a folder, or text file listing images",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output .npz file, or output folder of a sharded extraction",
    )
    p.add_argument(
        "--layer",
        nargs="+",
        type=parse_layer,
        default=None,
        help="layer name(s) or negative int(s); several are concatenated (default: the generic layer)",
    )
    p.add_argument(
        "--on-error",
        choices=["raise", "nan"],
        default="raise",
        help="a bad image stops the command (raise, the default), or gets a NaN row and is listed "
        "in the output (nan: failed_index/failed_path/failed_message in the .npz, 'failures' "
        "in a shard folder's manifest.json)",
    )
    shards = p.add_argument_group("sharded output (a folder; resumable)")
    shards.add_argument(
        "--shard-size",
        type=int,
        default=None,
        metavar="N",
        help="write OUT as a folder of .npy shards of N images each (default with --resume or "
        "--scheduler: the resumed job's, else 1024)",
    )
    shards.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sharded job in OUT: compute only its missing shards",
    )
    shards.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="compute the shards on this Dask scheduler (tcp://host:8786 or a scheduler .json "
        "file; needs sk-decaf[dask]); OUT is written by this process",
    )
    add_backbone_options(p)
    p.set_defaults(func=run_extract)


def _transformer(args: argparse.Namespace) -> DeCAFTransformer:
    from ..transformers import DeCAFTransformer

    layer = args.layer[0] if args.layer and len(args.layer) == 1 else args.layer
    return DeCAFTransformer(layer=layer, cache=args.cache, on_error=args.on_error, **transformer_kwargs(args))


def _save_npz(path: str | os.PathLike[str], **arrays: Any) -> str:
    """``np.savez`` to a temporary file next to ``path``, renamed over it once complete."""
    name = os.fspath(path)
    name = name if name.endswith(".npz") else name + ".npz"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=os.path.dirname(os.path.abspath(name)))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, name)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return name


def _report_failures(failures: list[dict[str, Any]], n: int, where: str) -> None:
    if failures:
        print(
            f"{len(failures)} of {n} images could not be featurised (NaN rows), listed in {where}; first: "
            f"{failures[0]['message']}"
        )


def _run_npz(args: argparse.Namespace, data: Bunch, decaf: DeCAFTransformer) -> int:
    from ..parallel import FAILURES_WARNING, transform_block

    start = time.perf_counter()
    with warnings.catch_warnings():  # the failures are printed below, once, and stored in the file
        warnings.filterwarnings("ignore", FAILURES_WARNING, UserWarning)
        features, failures = transform_block(decaf.fit(data.paths), data.paths)
    seconds = time.perf_counter() - start
    arrays = dict(
        features=features,
        paths=np.asarray(data.paths),
        target=data.target,
        target_names=np.asarray(data.target_names, dtype=str),
        layers=np.asarray(decaf.layers_),
        feature_names=np.asarray(decaf.get_feature_names_out(), dtype=str),
    )
    if args.on_error == "nan":
        arrays.update(
            failed_index=np.asarray([f["index"] for f in failures], dtype=np.int64),
            failed_path=np.asarray([f["item"] for f in failures], dtype=str),
            failed_message=np.asarray([f["message"] for f in failures], dtype=str),
        )
    output = _save_npz(args.output, **arrays)
    print(
        f"{len(data.paths)} images x {features.shape[1]} features ({', '.join(decaf.layers_)}) of "
        f"{args.backbone} in {seconds:.1f} s ({len(data.paths) / seconds:.1f} img/s, engine "
        f"{decaf.engine_}) -> {output}"
    )
    _report_failures(failures, len(data.paths), f"{output} (failed_index, failed_path, failed_message)")
    return 0


def _run_shards(args: argparse.Namespace, data: Bunch, decaf: DeCAFTransformer) -> int:
    from ..parallel import FAILURES_WARNING, extract_shards, get_client

    if args.output.endswith(".npz"):
        raise ValueError(f"A sharded output is a folder; drop the .npz suffix of {args.output!r}.")
    client = get_client(args.scheduler) if args.scheduler else None
    try:
        with warnings.catch_warnings():  # the failures are reported below, once
            warnings.filterwarnings("ignore", FAILURES_WARNING, UserWarning)
            report = extract_shards(
                decaf,
                data.paths,
                args.output,
                shard_size=args.shard_size,
                resume=args.resume,
                client=client,
                verbose=args.verbose,
                metadata={"target": data.target.tolist(), "target_names": [str(t) for t in data.target_names]},
            )
    finally:
        if client is not None:
            client.close()
    where = f"on {args.scheduler}" if client is not None else "locally"
    print(
        f"{len(data.paths)} images x {report.n_features} features in {report.n_shards} shards: "
        f"{len(report.computed)} computed {where}, {len(report.skipped)} already present, in "
        f"{report.seconds:.1f} s -> {args.output}"
    )
    _report_failures(report.failures, len(data.paths), os.path.join(args.output, "manifest.json"))
    return 0


def _beside(listing: str, entry: str) -> str:
    """A listed image: a URL or an absolute path as it is, a relative path in the listing's folder."""
    from .._images import is_url

    if is_url(entry) or os.path.isabs(entry):
        return entry
    if is_url(listing):
        head, sep, tail = listing.partition("::")
        return head.rsplit("/", 1)[0] + "/" + entry + sep + tail
    return os.path.join(os.path.dirname(listing), entry)


def _read_listing(text: str, where: str) -> Bunch:
    """The images of a listing: one path or URL per line, optionally a tab and its class; ``#`` comments.

    Relative paths are taken in the listing's folder.
    """
    from sklearn.utils import Bunch

    paths: list[str] = []
    labels: list[str | None] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path, tab, label = line.partition("\t")
        if tab and not label.strip():
            raise ValueError(f"{where}, line {number}: a tab with no class after it.")
        paths.append(_beside(where, path.strip()))
        labels.append(label.strip() if tab else None)
    if not paths:
        raise ValueError(f"{where} lists no images (one path or URL per line, optionally a tab and its class).")
    labelled = [label is not None for label in labels]
    if any(labelled) and not all(labelled):
        number = labelled.index(False) if labelled[0] else labelled.index(True)
        raise ValueError(
            f"{where}: image {number} ({paths[number]!r}) has {'no' if labelled[0] else 'a'} class, unlike "
            "the first one; give every image a class (path<TAB>class) or none."
        )
    names = sorted({label for label in labels if label is not None})
    lookup = {name: i for i, name in enumerate(names)}
    target = np.asarray([lookup[label] if label is not None else -1 for label in labels], dtype=np.intp)
    return Bunch(paths=paths, target=target, target_names=np.asarray(names, dtype=object))


def load_data(data: str) -> Bunch:
    """``paths``, ``target`` and ``target_names`` of DATA: a class folder (local or a URL prefix) or a listing."""
    from .._images import filesystem, is_url
    from ..datasets import load_image_folder

    if is_url(data):
        fs, path = filesystem(data)
        if fs.isfile(path):
            return _read_listing(fs.cat_file(path).decode("utf-8"), data)
    elif os.path.isfile(data):
        with open(data, encoding="utf-8") as f:
            return _read_listing(f.read(), data)
    return load_image_folder(data)


def run_extract(args: argparse.Namespace) -> int:
    if args.shard_size is not None and args.shard_size < 1:
        raise ValueError(f"--shard-size must be a positive number of images, got {args.shard_size}.")
    data = load_data(args.data)
    decaf = _transformer(args)
    if args.shard_size is not None or args.resume or args.scheduler is not None:
        return _run_shards(args, data, decaf)
    return _run_npz(args, data, decaf)
