"""Helpers shared by the dataset loaders: folder checks, image listing, lazy crops.

Nothing here downloads anything: every loader reads a folder the user has already
extracted, and a missing or wrong folder raises an error that shows the layout
expected.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image
from sklearn.utils import Bunch

from .._images import Crop, ImageItems, filesystem, image_size, load_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _layout_error(name: str, path: str | os.PathLike[str], layout: str, what: str = "folder") -> FileNotFoundError:
    return FileNotFoundError(
        f"{name}: {what} {str(path)!r} not found. Expected layout:\n{layout}\n"
        "sk_decaf never downloads data: get the dataset from its official site and "
        "extract it so that it matches this layout."
    )


def _check_dir(path: str | os.PathLike[str], name: str, layout: str) -> Path:
    """Return `path` as a Path, raising a layout error if it is not a folder."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise _layout_error(name, path, layout)
    return path


def _check_file(path: str | os.PathLike[str], name: str, layout: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise _layout_error(name, path, layout, what="file")
    return path


def _subdirs(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the visible sub-folders of `folder`."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _list_images(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted paths (str) of the image files directly inside `folder`."""
    with os.scandir(folder) as it:
        names = sorted(
            e.name
            for e in it
            if e.is_file() and not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        )
    return [os.path.join(folder, n) for n in names]


def _scan_class_folders(
    folder: str | os.PathLike[str], classes: Iterable[str] | None = None
) -> tuple[list[str], list[str]]:
    """Images of `<folder>/<class>/*`, as (paths, class name of each image)."""
    paths: list[str] = []
    labels: list[str] = []
    for name in _subdirs(folder) if classes is None else classes:
        images = _list_images(os.path.join(folder, name))
        paths += images
        labels += [name] * len(images)
    return paths, labels


def _join_url(root: str, *names: str) -> str:
    """``root/name/...`` for a URL, chained ones too (``zip://folder::s3://b/x.zip`` -> ``zip://folder/a::...``)."""
    head, sep, tail = root.partition("::")
    if not head.endswith("://"):
        head = head.rstrip("/") + "/"
    return head + "/".join(names) + sep + tail


def _scan_url_class_folders(root: str, name: str, layout: str) -> tuple[list[str], list[str]]:
    """Images of ``<root>/<class>/*`` for a URL ``root``, listed with fsspec, as (URLs, class of each image).

    The URLs keep ``root``'s spelling (its protocol and any chained file systems), so that the images are
    read as the user named them.
    """
    fs, path = filesystem(root)
    if not fs.isdir(path):
        raise _layout_error(name, root, layout)

    def entries(folder: str, kind: str) -> list[str]:
        found = (e for e in fs.ls(folder, detail=True) if e.get("type") == kind)
        names = (str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in found)
        return sorted(n for n in names if n and not n.startswith("."))

    paths: list[str] = []
    labels: list[str] = []
    for label in entries(path, "directory"):
        files = [
            f
            for f in entries(path.rstrip("/") + "/" + label, "file")
            if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        ]
        paths += [_join_url(root, label, f) for f in files]
        labels += [label] * len(files)
    return paths, labels


def _make_bunch(
    paths: Iterable[str | os.PathLike[str]], labels: ArrayLike, target_names: ArrayLike | None = None, **extra: Any
) -> Bunch:
    """Bunch(paths, target, target_names, **extra); targets index `target_names`.

    `target_names` defaults to the sorted distinct labels.
    """
    label_array = np.asarray(labels, dtype=object)
    if target_names is None:
        target_names = sorted(set(label_array.tolist()))
    names = np.asarray(target_names, dtype=object)
    lookup = {name: i for i, name in enumerate(names.tolist())}
    target = np.fromiter((lookup[lab] for lab in label_array), dtype=np.intp, count=len(label_array))
    return Bunch(paths=[str(p) for p in paths], target=target, target_names=names, **extra)


def _load_domains(
    root: str | os.PathLike[str], domain: str | Iterable[str] | None, name: str, layout: str, subdir: str
) -> Bunch:
    """Images of `<root>/<domain>/<subdir>/<class>/*` for the requested domains."""
    root = _check_dir(root, name, layout)
    available = [d for d in _subdirs(root) if (root / d / subdir).is_dir()]
    available = [d for d in available if _subdirs(root / d / subdir)]
    if not available:
        raise _layout_error(name, root / "<domain>", layout)
    if domain is None:
        domains = available
    else:
        domains = [domain] if isinstance(domain, str) else list(domain)
    unknown = sorted(set(domains) - set(available))
    if unknown:
        raise ValueError(f"{name}: unknown domain(s) {unknown}; found {available}.")
    paths: list[str] = []
    labels: list[str] = []
    doms: list[str] = []
    for d in domains:
        p, lab = _scan_class_folders(root / d / subdir)
        paths += p
        labels += lab
        doms += [d] * len(p)
    return _make_bunch(paths, labels, domain=np.asarray(doms, dtype=object))


def _read_rows(path: str | os.PathLike[str]) -> list[list[str]]:
    """Whitespace-split rows of a text file, skipping blank and `#` lines."""
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.strip() and not line.startswith("#")]


def _split_from_lists(relpaths: Sequence[str], lists: Mapping[str, Iterable[str]]) -> np.ndarray:
    """Per-image split labels from official image lists.

    Parameters
    ----------
    relpaths : list of str
        Key of each image, e.g. its path relative to the dataset root.
    lists : dict
        Maps a split label ("train", "test", ...) to the keys it contains.

    Returns
    -------
    split : ndarray of str
        The label of each image, "" for images in no list.
    """
    index = {key: i for i, key in enumerate(relpaths)}
    split = np.full(len(relpaths), "", dtype=object)
    missing = 0
    for label, keys in lists.items():
        for key in keys:
            i = index.get(key)
            if i is None:
                missing += 1
            else:
                split[i] = label
    if missing:
        warnings.warn(
            f"{missing} image(s) named in the official split files were not found on disk; they are ignored.",
            UserWarning,
            stacklevel=3,
        )
    return split


def _split_from_files(keys: Sequence[str], files: Mapping[str, str | os.PathLike[str]]) -> np.ndarray | None:
    """`_split_from_lists` reading the first column of each list file.

    `files` maps a split label to a file; returns None unless all files exist.
    """
    if not all(Path(f).is_file() for f in files.values()):
        return None
    lists = {label: [row[0] for row in _read_rows(f)] for label, f in files.items()}
    return _split_from_lists(keys, lists)


def _image_sizes(paths: Sequence[str]) -> np.ndarray:
    """(width, height) of each image as displayed (EXIF orientation applied), reading only the file headers."""
    sizes = np.empty((len(paths), 2), dtype=float)
    for i, path in enumerate(paths):
        sizes[i] = image_size(path, i)
    return sizes


def _enlarge_boxes(boxes: ArrayLike, scale: float, sizes: np.ndarray) -> np.ndarray:
    """Scale (x, y, w, h) boxes about their centre, then clip them to the image.

    Parameters
    ----------
    boxes : ndarray of shape (n, 4)
        Boxes as (x, y, width, height), in pixels.
    scale : float
        Factor applied to width and height (DeCAF uses 1.5 on CUB-200).
    sizes : ndarray of shape (n, 2)
        (width, height) of each image.
    """
    xywh = np.asarray(boxes, dtype=float)
    centre = xywh[:, :2] + xywh[:, 2:] / 2
    half = scale * xywh[:, 2:] / 2
    top_left = np.maximum(centre - half, 0)
    bottom_right = np.minimum(centre + half, sizes)
    return np.hstack([top_left, bottom_right - top_left])


class CroppedImages(ImageItems):
    """Lazy sequence of image crops, usable directly as `X` for a featurizer.

    Indexing with an integer opens the image file and returns the RGB crop as a
    ``PIL.Image.Image``; indexing with a slice, an integer array or a boolean mask
    returns another (still lazy) `CroppedImages`. Nothing is decoded before it is
    asked for, so a whole dataset costs only its file names and boxes in memory.

    Images are read with sk_decaf's image reader: EXIF orientation is applied
    first (boxes are in pixels of the image as displayed), and a bad file raises
    a ``ValueError`` naming its index and path. Given as `X` to a transformer, the
    crops are read like any other image: ``on_error="nan"``, the activation cache
    (keyed by the file's content and the box, without decoding) and reduced-size
    JPEG decoding all apply.

    Parameters
    ----------
    paths : sequence of str
        Image files: paths, or URLs (read through fsspec, see :doc:`/sources`).
    boxes : array-like of shape (n_images, 4)
        Crop box of each image as (x, y, width, height) in pixels.

    Notes
    -----
    scikit-learn's cross-validation tools index a non-array sequence item by item,
    which decodes every crop of a training split at once; :func:`sk_decaf.evaluate`
    keeps the sequence lazy instead.

    Examples
    --------
    >>> from sk_decaf.datasets import CroppedImages
    >>> crops = CroppedImages(["a.jpg", "b.jpg"], [[0, 0, 10, 20], [5, 5, 8, 8]])
    >>> len(crops), len(crops[[1]])
    (2, 1)
    >>> crops.item(1)
    Crop(source='b.jpg', box=(5.0, 5.0, 8.0, 8.0))
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]], boxes: ArrayLike) -> None:
        self.paths = [str(p) for p in paths]
        self.boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        if len(self.boxes) != len(self.paths):
            raise ValueError(f"Got {len(self.paths)} paths but {len(self.boxes)} boxes.")

    def __len__(self) -> int:
        return len(self.paths)

    def item(self, i: int) -> Crop:
        """The reader item of crop ``i``: a :class:`~sk_decaf._images.Crop` of its file."""
        return Crop(self.paths[i], tuple(self.boxes[i]))

    @overload
    def __getitem__(self, key: int) -> Image.Image: ...
    @overload
    def __getitem__(self, key: slice | ArrayLike) -> CroppedImages: ...
    def __getitem__(self, key: int | slice | ArrayLike) -> Image.Image | CroppedImages:
        """An integer: the decoded RGB crop; a slice, integer array or boolean mask: a lazy ``CroppedImages``."""
        if isinstance(key, Integral):
            return load_rgb(self.item(int(key)), int(key))
        if isinstance(key, slice):
            idx = np.arange(len(self))[key]
        else:
            mask_or_indices = np.asarray(key)
            if mask_or_indices.dtype != bool:
                mask_or_indices = mask_or_indices.astype(np.intp)
            idx = np.arange(len(self))[mask_or_indices]
        return CroppedImages([self.paths[i] for i in idx], self.boxes[idx])

    def __repr__(self) -> str:
        return f"CroppedImages(n_images={len(self)})"
