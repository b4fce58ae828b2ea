"""The embedded demo set and generic ``root/<class>/<image>`` folders."""

from __future__ import annotations

import os
from importlib import resources

from sklearn.utils import Bunch

from .._images import is_url
from ._base import _check_dir, _make_bunch, _scan_class_folders, _scan_url_class_folders

__all__ = ["load_demo", "load_image_folder", "DEMO_CITATION"]

DEMO_CITATION = (
    "L. Fei-Fei, R. Fergus and P. Perona. Learning generative visual models from few training examples: "
    "an incremental Bayesian approach tested on 101 object categories. CVPR Workshop, 2004."
)

_FOLDER_LAYOUT = "  <root>/<class name>/<image file>  (one sub-folder per class)"


def load_image_folder(root: str | os.PathLike[str]) -> Bunch:
    """Load the images of a ``root/<class>/<image>`` folder tree.

    Classes are the sub-folder names in sorted order; images are listed in sorted order within each class.
    Only files with an image extension are listed; hidden files and folders are ignored.

    Parameters
    ----------
    root : str or path-like
        The folder holding one sub-folder per class: a local folder, or a URL prefix listed with fsspec
        (``s3://bucket/photos``, ``gs://...``, ``memory://...``, ``file:///...``; needs ``sk-decaf[fsspec]``),
        whose images are then URLs under it.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``paths`` (list of str: paths, or URLs for a URL ``root``), ``target`` (int array indexing
        ``target_names``), ``target_names``.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder.
    ValueError
        If it holds no class sub-folder with images.

    Examples
    --------
    >>> from sk_decaf.datasets import load_image_folder
    >>> from sk_decaf.datasets._demo import demo_root
    >>> data = load_image_folder(demo_root())
    >>> len(data.paths), len(data.target_names)
    (200, 10)
    """
    if is_url(root):
        paths, labels = _scan_url_class_folders(root, "load_image_folder", _FOLDER_LAYOUT)
    else:
        root = _check_dir(root, "load_image_folder", _FOLDER_LAYOUT)
        paths, labels = _scan_class_folders(root)
    if not paths:
        raise ValueError(f"load_image_folder: no images found in {str(root)!r}. Expected layout:\n{_FOLDER_LAYOUT}")
    return _make_bunch(paths, labels)


def demo_root() -> str:
    """Path of the embedded demo images."""
    return str(resources.files("sk_decaf.datasets") / "data" / "caltech101_mini")


def load_demo() -> Bunch:
    """Load the embedded demo set: 10 Caltech-101 classes x 20 images, shipped inside the package.

    Classes: Faces_easy, Leopards, Motorbikes, airplanes, bonsai, car_side, chandelier, hawksbill, ketch,
    watch. The images are Caltech-101's (CC BY 4.0); cite Fei-Fei et al. 2004 (``DEMO_CITATION``).

    Returns
    -------
    data : sklearn.utils.Bunch
        ``paths``, ``target``, ``target_names``, ``citation``, ``license``.

    Examples
    --------
    >>> from sk_decaf.datasets import load_demo
    >>> demo = load_demo()
    >>> len(demo.paths), demo.target_names[:3].tolist()
    (200, ['Faces_easy', 'Leopards', 'Motorbikes'])
    """
    data = load_image_folder(demo_root())
    data.citation = DEMO_CITATION
    data.license = "CC BY 4.0"
    return data
