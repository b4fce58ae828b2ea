"""Loaders for the benchmarks of DeCAF and Azizpour et al., reading local folders.

Each loader returns a :class:`~sklearn.utils.Bunch` with ``paths`` (list of str),
``target`` (int array indexing ``target_names``) and ``target_names``, plus
``domain``, ``boxes``, ``images`` or ``split`` where the dataset has them.
``split`` holds the official partition of each image ("train", "val", "test" or
"" when the image is in no list); pass it to
:class:`sk_decaf.model_selection.OfficialSplit` to use it as ``cv``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._base import (
    CroppedImages,
    _check_dir,
    _check_file,
    _enlarge_boxes,
    _image_sizes,
    _layout_error,
    _load_domains,
    _make_bunch,
    _read_rows,
    _scan_class_folders,
    _split_from_files,
    _subdirs,
)

_CALTECH101 = "  <root>/101_ObjectCategories/<class>/image_0001.jpg  (incl. BACKGROUND_Google)"
_OFFICE31 = "  <root>/<domain>/images/<class>/*.jpg  (domains amazon, dslr, webcam)"
_OFFICE_CALTECH10 = "  <root>/<domain>/<class>/*.jpg  (amazon, caltech10, dslr, webcam)"
_SUN397 = (
    "  <root>/<letter>/<class>/[<subclass>/]*.jpg  e.g. <root>/a/abbey/sun_aaa.jpg\n"
    "  optional partitions: <root>/[Partitions/]Training_01.txt, Testing_01.txt, ..."
)
_MIT67 = "  <root>/Images/<class>/*.jpg\n  optional: <root>/TrainImages.txt, TestImages.txt"
_CUB200 = (
    "  <root>/images.txt, image_class_labels.txt, bounding_boxes.txt,\n"
    "  <root>/train_test_split.txt, [classes.txt], images/<class>/*.jpg  (CUB_200_2011)"
)
_FLOWERS102 = "  <root>/jpg/image_00001.jpg, <root>/imagelabels.mat, [<root>/setid.mat]"
_PETS = "  <root>/images/*.jpg, <root>/annotations/list.txt,\n  optional <root>/annotations/trainval.txt and test.txt"


def load_caltech101(root: str | os.PathLike[str], *, include_background: bool = True) -> Bunch:
    """Load Caltech-101 from ``<root>/101_ObjectCategories/<class>/*.jpg``.

    Parameters
    ----------
    root : str or path-like
        Folder holding ``101_ObjectCategories`` (or that folder itself).
    include_background : bool, default=True
        Keep the ``BACKGROUND_Google`` class, as DeCAF does (102 classes).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths``, ``target`` and ``target_names`` (class folders, sorted).

    References
    ----------
    .. [1] L. Fei-Fei, R. Fergus and P. Perona, "Learning generative visual
       models from few training examples", CVPR Workshop, 2004.

    Examples
    --------
    >>> from sk_decaf.datasets import load_caltech101
    >>> data = load_caltech101("~/data/caltech101")  # doctest: +SKIP
    >>> len(data.target_names)  # doctest: +SKIP
    102
    """
    root = _check_dir(root, "Caltech-101", _CALTECH101)
    base = root / "101_ObjectCategories"
    base = base if base.is_dir() else root
    classes = [c for c in _subdirs(base) if include_background or c != "BACKGROUND_Google"]
    paths, labels = _scan_class_folders(base, classes)
    if not paths:
        raise _layout_error("Caltech-101", base / "<class>", _CALTECH101)
    return _make_bunch(paths, labels)


def load_office31(root: str | os.PathLike[str], *, domain: str | Iterable[str] | None = None) -> Bunch:
    """Load Office-31 from ``<root>/<domain>/images/<class>/*.jpg``.

    Parameters
    ----------
    root : str or path-like
        Folder holding the ``amazon``, ``dslr`` and ``webcam`` folders.
    domain : str, list of str or None, default=None
        Domain(s) to load; None loads every domain found.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths``, ``target``, ``target_names`` and ``domain`` (domain of each image).

    See Also
    --------
    sk_decaf.model_selection.DomainAdaptationSplit : The Saenko et al. protocol.

    References
    ----------
    .. [1] K. Saenko, B. Kulis, M. Fritz and T. Darrell, "Adapting visual category
       models to new domains", ECCV, 2010.

    Examples
    --------
    >>> from sk_decaf.datasets import load_office31
    >>> data = load_office31("office31", domain=["amazon", "webcam"])  # doctest: +SKIP
    """
    return _load_domains(root, domain, "Office-31", _OFFICE31, "images")


def load_office_caltech10(root: str | os.PathLike[str], *, domain: str | Iterable[str] | None = None) -> Bunch:
    """Load Office-Caltech-10 from ``<root>/<domain>/<class>/*.jpg``.

    Parameters
    ----------
    root : str or path-like
        Folder holding one folder per domain (amazon, caltech10, dslr, webcam).
    domain : str, list of str or None, default=None
        Domain(s) to load; None loads every domain found.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths``, ``target``, ``target_names`` and ``domain`` (domain of each image).

    References
    ----------
    .. [1] B. Gong, Y. Shi, F. Sha and K. Grauman, "Geodesic flow kernel for
       unsupervised domain adaptation", CVPR, 2012.

    Examples
    --------
    >>> from sk_decaf.datasets import load_office_caltech10
    >>> data = load_office_caltech10("office_caltech10", domain="dslr")  # doctest: +SKIP
    >>> data.target_names[:2]  # doctest: +SKIP
    array(['backpack', 'bike'], dtype=object)
    """
    return _load_domains(root, domain, "Office-Caltech-10", _OFFICE_CALTECH10, ".")


def load_sun397(root: str | os.PathLike[str], *, partitions: str | os.PathLike[str] | None = "auto") -> Bunch:
    """Load SUN-397 from ``<root>/<letter>/<class>/[<subclass>/]*.jpg``.

    Parameters
    ----------
    root : str or path-like
        The extracted ``SUN397`` folder.
    partitions : "auto", str, path-like or None, default="auto"
        Folder with the official ``Training_XX.txt`` / ``Testing_XX.txt`` files.
        "auto" looks in ``root`` and ``root/Partitions``; None ignores them.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths``, ``target``, ``target_names`` (e.g. "abbey",
        "apartment_building/outdoor") and, when partitions are found, ``split`` of
        shape (n_partitions, n_images) with "train", "test" or "".

    References
    ----------
    .. [1] J. Xiao, J. Hays, K. Ehinger, A. Oliva and A. Torralba, "SUN database:
       Large-scale scene recognition from abbey to zoo", CVPR, 2010.

    Examples
    --------
    >>> from sk_decaf.datasets import load_sun397
    >>> data = load_sun397("~/data/SUN397")  # doctest: +SKIP
    >>> data.split.shape  # doctest: +SKIP
    (10, 108754)
    """
    root = _check_dir(root, "SUN-397", _SUN397)
    paths, labels = [], []
    for letter in (d for d in _subdirs(root) if len(d) == 1):
        for name in _subdirs(root / letter):
            p, _ = _scan_class_folders(root / letter, [name])
            paths += p
            labels += [name] * len(p)
            for sub in _subdirs(root / letter / name):
                p, _ = _scan_class_folders(root / letter / name, [sub])
                paths += p
                labels += [f"{name}/{sub}"] * len(p)
    if not paths:
        raise _layout_error("SUN-397", root / "<letter>" / "<class>", _SUN397)
    bunch = _make_bunch(paths, labels)
    if partitions is None:
        return bunch
    folders = [root, root / "Partitions"] if partitions == "auto" else [Path(partitions)]
    keys = ["/" + Path(p).relative_to(root).as_posix() for p in paths]
    for folder in folders:
        rows = []
        for k in range(1, 100):
            files = {
                "train": folder / f"Training_{k:02d}.txt",
                "test": folder / f"Testing_{k:02d}.txt",
            }
            split = _split_from_files(keys, files)
            if split is None:
                break
            rows.append(split)
        if rows:
            bunch.split = np.vstack(rows)
            return bunch
    if partitions != "auto":
        raise _layout_error("SUN-397", folders[0] / "Training_01.txt", _SUN397, "file")
    return bunch


def load_mit67(root: str | os.PathLike[str]) -> Bunch:
    """Load MIT Indoor-67 from ``<root>/Images/<class>/*.jpg``.

    Parameters
    ----------
    root : str or path-like
        Folder holding ``Images`` and, optionally, ``TrainImages.txt`` and
        ``TestImages.txt`` (the official 80/20 images per class).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths``, ``target``, ``target_names`` and, when the lists exist, ``split``
        ("train", "test" or "" for each image).

    References
    ----------
    .. [1] A. Quattoni and A. Torralba, "Recognizing indoor scenes", CVPR, 2009.

    Examples
    --------
    >>> from sk_decaf.datasets import load_mit67
    >>> data = load_mit67("~/data/mit67")  # doctest: +SKIP
    """
    root = _check_dir(root, "MIT-67", _MIT67)
    images = _check_dir(root / "Images", "MIT-67", _MIT67)
    paths, labels = _scan_class_folders(images)
    bunch = _make_bunch(paths, labels)
    keys = [Path(p).relative_to(images).as_posix() for p in paths]
    files = {"train": root / "TrainImages.txt", "test": root / "TestImages.txt"}
    split = _split_from_files(keys, files)
    if split is not None:
        bunch.split = split
    return bunch


def load_cub200(root: str | os.PathLike[str], *, crop: float | None = 1.5) -> Bunch:
    """Load CUB-200-2011, cropping each bird to its enlarged bounding box.

    DeCAF (Sec. 4.3) crops "regions 1.5x the size of the provided bounding boxes".

    Parameters
    ----------
    root : str or path-like
        The extracted ``CUB_200_2011`` folder.
    crop : float or None, default=1.5
        Scale of the crop box about the centre of the annotated box, clipped to
        the image. None keeps whole images.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths``, ``target``, ``target_names``, ``split`` ("train"/"test"),
        ``boxes`` (n_images, 4) as (x, y, width, height): the crop boxes, or the
        annotated boxes when ``crop=None``, and ``images``: a lazy
        :class:`CroppedImages` (the paths when ``crop=None``) to pass as ``X``.

    References
    ----------
    .. [1] C. Wah, S. Branson, P. Welinder, P. Perona and S. Belongie, "The
       Caltech-UCSD Birds-200-2011 Dataset", Caltech, 2011.

    Examples
    --------
    >>> from sk_decaf.datasets import load_cub200
    >>> birds = load_cub200("~/data/CUB_200_2011")  # doctest: +SKIP
    >>> birds.images[0].size  # doctest: +SKIP
    """
    root = _check_dir(root, "CUB-200-2011", _CUB200)
    files = ("images", "image_class_labels", "bounding_boxes", "train_test_split")
    read = {}
    for name in files:
        path = _check_file(root / f"{name}.txt", "CUB-200-2011", _CUB200)
        read[name] = {r[0]: r[1:] for r in _read_rows(path)}
    ids = sorted(read["images"], key=int)
    paths = [str(root / "images" / read["images"][i][0]) for i in ids]
    if not paths or not Path(paths[0]).is_file():
        raise _layout_error("CUB-200-2011", paths[0] if paths else root, _CUB200, "file")
    labels = [int(read["image_class_labels"][i][0]) for i in ids]
    if (root / "classes.txt").is_file():
        names = {int(r[0]): r[1] for r in _read_rows(root / "classes.txt")}
    else:
        names = {lab: Path(p).parent.name for lab, p in zip(labels, paths)}
    boxes = np.array([read["bounding_boxes"][i] for i in ids], dtype=float).reshape(-1, 4)
    is_train = [int(read["train_test_split"][i][0]) for i in ids]
    if crop is not None:
        boxes = _enlarge_boxes(boxes, crop, _image_sizes(paths))
    return _make_bunch(
        paths,
        [names[k] for k in labels],
        [names[k] for k in sorted(names)],
        split=np.array(["test", "train"], dtype=object)[is_train],
        boxes=boxes,
        images=list(paths) if crop is None else CroppedImages(paths, boxes),
    )


def load_flowers102(root: str | os.PathLike[str]) -> Bunch:
    """Load Oxford Flowers-102 from ``jpg/``, ``imagelabels.mat`` and ``setid.mat``.

    Parameters
    ----------
    root : str or path-like
        Folder holding ``jpg/image_00001.jpg``..., ``imagelabels.mat`` and,
        optionally, ``setid.mat`` (the official train/val/test ids).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths``, ``target`` (0..101), ``target_names`` (the official labels
        "1".."102") and, with ``setid.mat``, ``split`` ("train", "val", "test").

    References
    ----------
    .. [1] M.-E. Nilsback and A. Zisserman, "Automated flower classification over
       a large number of classes", ICVGIP, 2008.

    Examples
    --------
    >>> from sk_decaf.datasets import load_flowers102
    >>> data = load_flowers102("~/data/flowers102")  # doctest: +SKIP
    """
    from scipy.io import loadmat

    root = _check_dir(root, "Flowers-102", _FLOWERS102)
    labels = loadmat(_check_file(root / "imagelabels.mat", "Flowers-102", _FLOWERS102))
    labels = np.asarray(labels["labels"]).ravel().astype(int)
    jpg = _check_dir(root / "jpg", "Flowers-102", _FLOWERS102)
    paths = [str(jpg / f"image_{i:05d}.jpg") for i in range(1, len(labels) + 1)]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise _layout_error("Flowers-102", missing[0], _FLOWERS102, "file")
    names = [str(k) for k in range(1, labels.max() + 1)]
    bunch = _make_bunch(paths, [str(k) for k in labels], names)
    if (root / "setid.mat").is_file():
        ids = loadmat(root / "setid.mat")
        split = np.full(len(paths), "", dtype=object)
        for key, name in (("trnid", "train"), ("valid", "val"), ("tstid", "test")):
            split[np.asarray(ids[key]).ravel().astype(int) - 1] = name
        bunch.split = split
    return bunch


def load_pets(root: str | os.PathLike[str]) -> Bunch:
    """Load the Oxford-IIIT Pets breeds from ``images/`` and ``annotations/list.txt``.

    Parameters
    ----------
    root : str or path-like
        Folder holding ``images/*.jpg`` and ``annotations/`` (``list.txt`` and,
        optionally, the official ``trainval.txt`` and ``test.txt``).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths``, ``target`` (37 breeds), ``target_names``, ``species`` ("cat" or
        "dog") and, with the official lists, ``split`` ("train" for the trainval
        list, "test").

    References
    ----------
    .. [1] O. M. Parkhi, A. Vedaldi, A. Zisserman and C. V. Jawahar, "Cats and
       dogs", CVPR, 2012.

    Examples
    --------
    >>> from sk_decaf.datasets import load_pets
    >>> data = load_pets("~/data/oxford-iiit-pet")  # doctest: +SKIP
    """
    root = _check_dir(root, "Oxford-IIIT Pets", _PETS)
    annotations = root / "annotations"
    rows = _read_rows(_check_file(annotations / "list.txt", "Oxford-IIIT Pets", _PETS))
    images = _check_dir(root / "images", "Oxford-IIIT Pets", _PETS)
    names = {int(r[1]): r[0].rsplit("_", 1)[0] for r in rows}
    paths = [str(images / f"{r[0]}.jpg") for r in rows]
    bunch = _make_bunch(
        paths,
        [names[int(r[1])] for r in rows],
        [names[k] for k in sorted(names)],
        species=np.array(["cat", "dog"], dtype=object)[[int(r[2]) - 1 for r in rows]],
    )
    files = {"train": annotations / "trainval.txt", "test": annotations / "test.txt"}
    split = _split_from_files([r[0] for r in rows], files)
    if split is not None:
        bunch.split = split
    return bunch
