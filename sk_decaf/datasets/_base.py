"""Helpers shared by the dataset loaders: folder checks, image listing, lazy crops.

Nothing here downloads anything: every loader reads a folder the user has already
extracted, and a missing or wrong folder raises an error that shows the layout
expected.
"""

import os
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._images import Crop, ImageItems, image_size, load_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _layout_error(name, path, layout, what="folder"):
    return FileNotFoundError(
        f"{name}: {what} {str(path)!r} not found. Expected layout:\n{layout}\n"
        "sk_decaf never downloads data: get the dataset from its official site and "
        "extract it so that it matches this layout."
    )


def _check_dir(path, name, layout):
    """Return `path` as a Path, raising a layout error if it is not a folder."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise _layout_error(name, path, layout)
    return path


def _check_file(path, name, layout):
    path = Path(path)
    if not path.is_file():
        raise _layout_error(name, path, layout, what="file")
    return path


def _subdirs(folder):
    """Sorted names of the visible sub-folders of `folder`."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _list_images(folder):
    """Sorted paths (str) of the image files directly inside `folder`."""
    with os.scandir(folder) as it:
        names = sorted(
            e.name
            for e in it
            if e.is_file() and not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        )
    return [os.path.join(folder, n) for n in names]


def _scan_class_folders(folder, classes=None):
    """Images of `<folder>/<class>/*`, as (paths, class name of each image)."""
    paths, labels = [], []
    for name in _subdirs(folder) if classes is None else classes:
        images = _list_images(os.path.join(folder, name))
        paths += images
        labels += [name] * len(images)
    return paths, labels


def _make_bunch(paths, labels, target_names=None, **extra):
    """Bunch(paths, target, target_names, **extra); targets index `target_names`.

    `target_names` defaults to the sorted distinct labels.
    """
    labels = np.asarray(labels, dtype=object)
    if target_names is None:
        target_names = sorted(set(labels.tolist()))
    target_names = np.asarray(target_names, dtype=object)
    lookup = {name: i for i, name in enumerate(target_names.tolist())}
    target = np.fromiter((lookup[lab] for lab in labels), dtype=np.intp, count=len(labels))
    return Bunch(paths=[str(p) for p in paths], target=target, target_names=target_names, **extra)


def _load_domains(root, domain, name, layout, subdir):
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
    paths, labels, doms = [], [], []
    for d in domains:
        p, lab = _scan_class_folders(root / d / subdir)
        paths += p
        labels += lab
        doms += [d] * len(p)
    return _make_bunch(paths, labels, domain=np.asarray(doms, dtype=object))


def _read_rows(path):
    """Whitespace-split rows of a text file, skipping blank and `#` lines."""
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.strip() and not line.startswith("#")]


def _split_from_lists(relpaths, lists):
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


def _split_from_files(keys, files):
    """`_split_from_lists` reading the first column of each list file.

    `files` maps a split label to a file; returns None unless all files exist.
    """
    if not all(Path(f).is_file() for f in files.values()):
        return None
    lists = {label: [row[0] for row in _read_rows(f)] for label, f in files.items()}
    return _split_from_lists(keys, lists)


def _image_sizes(paths):
    """(width, height) of each image as displayed (EXIF orientation applied), reading only the file headers."""
    sizes = np.empty((len(paths), 2), dtype=float)
    for i, path in enumerate(paths):
        sizes[i] = image_size(path, i)
    return sizes


def _enlarge_boxes(boxes, scale, sizes):
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
    boxes = np.asarray(boxes, dtype=float)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    half = scale * boxes[:, 2:] / 2
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
        Image files.
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

    def __init__(self, paths, boxes):
        self.paths = [str(p) for p in paths]
        self.boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        if len(self.boxes) != len(self.paths):
            raise ValueError(f"Got {len(self.paths)} paths but {len(self.boxes)} boxes.")

    def __len__(self):
        return len(self.paths)

    def item(self, i):
        """The reader item of crop ``i``: a :class:`~sk_decaf._images.Crop` of its file."""
        return Crop(self.paths[i], tuple(self.boxes[i]))

    def __getitem__(self, key):
        if isinstance(key, Integral):
            return load_rgb(self.item(int(key)), int(key))
        if isinstance(key, slice):
            idx = np.arange(len(self))[key]
        else:
            key = np.asarray(key)
            idx = np.arange(len(self))[key if key.dtype == bool else key.astype(np.intp)]
        return CroppedImages([self.paths[i] for i in idx], self.boxes[idx])

    def __repr__(self):
        return f"CroppedImages(n_images={len(self)})"
