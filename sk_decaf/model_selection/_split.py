"""Splitters for the DeCAF evaluation protocols, usable as ``cv=`` in scikit-learn."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state
from sklearn.utils.validation import column_or_1d

from .._sklearn_compat import Interval, StrOptions, num_samples, validate_parameter_constraints

# Labelled source images per class in the Office protocol of Saenko et al. (2010).
SOURCE_IMAGES_PER_CLASS = {
    "amazon": 20,
    "caltech": 20,
    "caltech10": 20,
    "dslr": 8,
    "webcam": 8,
}


def _validate(splitter: Any) -> None:
    params = {name: getattr(splitter, name) for name in splitter._parameter_constraints}
    validate_parameter_constraints(splitter._parameter_constraints, params, caller_name=type(splitter).__name__)


def _class_members(y: ArrayLike) -> tuple[np.ndarray, list[np.ndarray]]:
    """Class labels and, for each, the sorted indices of its samples."""
    classes, y_idx = np.unique(column_or_1d(y, dtype=None), return_inverse=True)
    order = np.argsort(y_idx, kind="stable")
    return classes, np.split(order, np.cumsum(np.bincount(y_idx))[:-1])


def _plan(
    counts: ArrayLike,
    n_train: int,
    n_test: int | None,
    too_few: str,
    classes: np.ndarray,
    what: str = "images",
    min_test: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train and test counts per class under the `too_few` policy.

    A class needs ``n_train + n_test`` images, or ``n_train + min_test`` when
    ``n_test`` is None (then the rest of the class is its test set). Returns the
    train counts, the test counts and the mask of classes that were short.
    """
    counts = np.asarray(counts)
    need = n_train + (min_test if n_test is None else n_test)
    short = np.asarray(counts < need)
    if short.any() and too_few == "raise":
        listing = ", ".join(f"{c!r} ({n})" for c, n in zip(classes[short].tolist(), counts[short].tolist()))
        raise ValueError(
            f"{short.sum()} class(es) have fewer than {need} {what}: {listing}. "
            "Set too_few='skip' to leave them out or too_few='shrink' to use what "
            "they have."
        )
    # "shrink": keep `min_test` images for testing, but train on a lone image.
    n_tr = np.minimum(n_train, np.maximum(counts - min_test, np.minimum(counts, 1)))
    rest = counts - n_tr
    n_te = rest if n_test is None else np.minimum(n_test, rest)
    if too_few == "skip":
        n_tr, n_te = np.where(short, 0, n_tr), np.where(short, 0, n_te)
    return n_tr, n_te, short


class PerClassSplit(BaseCrossValidator):
    """Random splits with a fixed number of training images per class.

    Each split draws ``n_train`` images of every class for training and uses
    ``n_test`` of the others (all of them when ``n_test=None``) for testing: the
    protocol of Caltech-101 (30 per class, rest for test) and SUN-397 (50/50).

    Parameters
    ----------
    n_train : int, default=30
        Training images per class.
    n_test : int or None, default=None
        Test images per class; None uses every image not drawn for training.
    n_splits : int, default=5
        Number of random splits.
    too_few : {"raise", "skip", "shrink"}, default="raise"
        What to do with a class that has fewer than ``n_train + n_test`` images
        (``n_train + 1`` when ``n_test=None``): "raise" a ValueError naming them;
        "skip" leaves the class out of every train and test set; "shrink" trains
        on ``min(n_train, count - 1)`` of its images (so at least one is left for
        testing; a class of one image goes to training) and tests on up to
        ``n_test`` of the rest.
    random_state : int, RandomState instance or None, default=None
        Seed of the draws. With an int, every call to `split` yields the same
        splits.

    See Also
    --------
    DomainAdaptationSplit : Splits for the Office domain-adaptation protocol.
    sk_decaf.evaluate : Runs a protocol and reports mean per-class accuracy.

    References
    ----------
    .. [1] J. Donahue et al., "DeCAF: A Deep Convolutional Activation Feature for
       Generic Visual Recognition", ICML, 2014, Sec. 4.1 and 4.4.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_decaf.model_selection import PerClassSplit
    >>> y = np.repeat([0, 1, 2], 10)
    >>> cv = PerClassSplit(n_train=3, n_test=2, n_splits=2, random_state=0)
    >>> [(len(train), len(test)) for train, test in cv.split(y, y)]
    [(9, 6), (9, 6)]
    """

    _parameter_constraints = {
        "n_train": [Interval(Integral, 1, None, closed="left")],
        "n_test": [Interval(Integral, 1, None, closed="left"), None],
        "n_splits": [Interval(Integral, 1, None, closed="left")],
        "too_few": [StrOptions({"raise", "skip", "shrink"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_train: int = 30,
        n_test: int | None = None,
        *,
        n_splits: int = 5,
        too_few: str = "raise",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.n_train = n_train
        self.n_test = n_test
        self.n_splits = n_splits
        self.too_few = too_few
        self.random_state = random_state

    def get_n_splits(self, X: object = None, y: object = None, groups: object = None) -> int:
        """Return the number of splits, `n_splits`."""
        return self.n_splits

    def split(
        self, X: ArrayLike | None, y: ArrayLike | None, groups: object = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Generate train and test indices.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples; only their number is used.
        y : array-like of shape (n_samples,)
            Class labels.
        groups : None
            Ignored, exists for API compatibility.

        Yields
        ------
        train, test : ndarray
            Sorted indices of the training and test samples of each split.
        """
        _validate(self)
        if y is None:
            raise ValueError("PerClassSplit needs the class labels y.")
        labels = column_or_1d(y, dtype=None)
        if X is not None and num_samples(X) != len(labels):
            raise ValueError(f"X has {num_samples(X)} samples but y has {len(labels)}.")
        classes, members = _class_members(labels)
        n_tr, n_te, _ = _plan([len(m) for m in members], self.n_train, self.n_test, self.too_few, classes)
        rng = check_random_state(self.random_state)
        for _ in range(self.n_splits):
            train, test = [], []
            for idx, a, b in zip(members, n_tr, n_te):
                perm = rng.permutation(idx)
                train.append(perm[:a])
                test.append(perm[a : a + b])
            yield np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class DomainAdaptationSplit(BaseCrossValidator):
    """Splits of the supervised domain-adaptation protocol of Saenko et al. (2010).

    Each split draws, for every class, ``n_source_per_class`` labelled images
    from the source domain and ``n_target_per_class`` from the target domain; the
    remaining target images form the test set. ``setting`` chooses the training
    set: source images only ("S"), labelled target images only ("T") or both
    ("ST"). The draws do not depend on ``setting``, so the three settings share
    their test sets for a given ``random_state``.

    The domain of each sample is the ``sample_domain`` argument of :meth:`split`,
    as in skada's splitters: readable names or skada's integers. It is requested
    by default, so with ``sklearn.set_config(enable_metadata_routing=True)``
    ``GridSearchCV(..., cv=DomainAdaptationSplit(...)).fit(X, y, sample_domain=d)``
    passes the labels to the splitter and to the pipeline's domain-adaptation
    steps alike. Without routing, scikit-learn passes them as ``groups``
    (``cross_val_score(..., groups=d)``), which is accepted too.

    Parameters
    ----------
    source, target : str or int
        Labels of the source and target domains, as found in ``sample_domain``
        (e.g. "amazon" and "webcam", or skada's 1 and -2).
    setting : {"S", "T", "ST"}, default="ST"
        Which labelled images are used for training.
    n_source_per_class : int or None, default=None
        Source images per class; None picks 20 for amazon and caltech10 and 8
        for dslr and webcam, as in the standard protocol (an integer ``source``
        needs an explicit value).
    n_target_per_class : int, default=3
        Labelled target images per class (0 for the unsupervised setting "S").
    n_splits : int, default=5
        Number of random splits.
    too_few : {"raise", "skip", "shrink"}, default="raise"
        Policy for classes with too few source images (fewer than
        ``n_source_per_class``) or target images (fewer than
        ``n_target_per_class + 1``); see :class:`PerClassSplit`.
    random_state : int, RandomState instance or None, default=None
        Seed of the draws.

    References
    ----------
    .. [1] K. Saenko, B. Kulis, M. Fritz and T. Darrell, "Adapting visual category
       models to new domains", ECCV, 2010.
    .. [2] J. Donahue et al., "DeCAF", ICML, 2014, Sec. 4.2 and Table 1.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_decaf.model_selection import DomainAdaptationSplit
    >>> y = np.tile(np.repeat([0, 1], 10), 2)
    >>> sample_domain = np.repeat(["amazon", "webcam"], 20)
    >>> cv = DomainAdaptationSplit("webcam", "amazon", n_splits=1, random_state=0)
    >>> train, test = next(cv.split(y, y, sample_domain=sample_domain))
    >>> len(train), len(test)  # 2 * (8 webcam + 3 amazon) train, 2 * 7 test
    (22, 14)
    >>> cv.get_n_source_per_class()
    8
    """

    __metadata_request__split = {"sample_domain": True}

    _parameter_constraints = {
        "source": [str, Integral],
        "target": [str, Integral],
        "setting": [StrOptions({"S", "T", "ST"})],
        "n_source_per_class": [Interval(Integral, 1, None, closed="left"), None],
        "n_target_per_class": [Interval(Integral, 0, None, closed="left")],
        "n_splits": [Interval(Integral, 1, None, closed="left")],
        "too_few": [StrOptions({"raise", "skip", "shrink"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        source: str | int,
        target: str | int,
        *,
        setting: str = "ST",
        n_source_per_class: int | None = None,
        n_target_per_class: int = 3,
        n_splits: int = 5,
        too_few: str = "raise",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.setting = setting
        self.n_source_per_class = n_source_per_class
        self.n_target_per_class = n_target_per_class
        self.n_splits = n_splits
        self.too_few = too_few
        self.random_state = random_state

    def get_n_splits(self, X: object = None, y: object = None, sample_domain: object = None) -> int:
        """Return the number of splits, `n_splits`."""
        return self.n_splits

    def get_n_source_per_class(self) -> int:
        """Source images per class that each split draws.

        Returns
        -------
        n : int
            ``n_source_per_class``, or the standard number of the protocol for
            ``source``: 20 for amazon and caltech10, 8 for dslr and webcam.
        """
        if self.n_source_per_class is not None:
            return self.n_source_per_class
        try:
            return SOURCE_IMAGES_PER_CLASS[str(self.source).lower()]
        except KeyError:
            raise ValueError(
                f"No standard number of source images for domain {self.source!r}; "
                f"set n_source_per_class (known: {SOURCE_IMAGES_PER_CLASS})."
            ) from None

    def split(
        self,
        X: ArrayLike | None,
        y: ArrayLike | None,
        sample_domain: ArrayLike | None = None,
        *,
        groups: ArrayLike | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Generate train and test indices.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples; only their number is used.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_domain : array-like of shape (n_samples,)
            Domain of each sample. Requested by default through metadata routing.
        groups : array-like of shape (n_samples,), default=None
            The same labels under scikit-learn's name: without metadata routing,
            ``cross_validate`` and the searches pass the domains as ``groups``.

        Yields
        ------
        train, test : ndarray
            Sorted indices of the training and test samples of each split.
        """
        if groups is not None:
            if sample_domain is not None:
                raise TypeError("Pass the domains once, as sample_domain (or scikit-learn's groups).")
            sample_domain = groups
        _validate(self)
        if self.source == self.target:
            raise ValueError(f"source and target are both {self.source!r}.")
        if self.setting == "T" and self.n_target_per_class == 0:
            raise ValueError("setting='T' needs n_target_per_class >= 1.")
        if sample_domain is None or y is None:
            raise ValueError(
                "DomainAdaptationSplit needs y and the domain of each sample as sample_domain "
                "(enable metadata routing to pass it through a search)."
            )
        labels, domain = column_or_1d(y, dtype=None), column_or_1d(sample_domain, dtype=None)
        if len(domain) != len(labels) or (X is not None and num_samples(X) != len(labels)):
            raise ValueError("X, y and sample_domain must have the same number of samples.")
        for name in (self.source, self.target):
            if not np.any(domain == name):
                raise ValueError(f"Domain {name!r} not in sample_domain {np.unique(domain)}.")
        classes = np.unique(labels)
        src = [np.flatnonzero((domain == self.source) & (labels == c)) for c in classes]
        tgt = [np.flatnonzero((domain == self.target) & (labels == c)) for c in classes]
        # A source class needs n_source images (none is tested), a target class
        # n_target labelled images plus at least one test image.
        n_src, _, short_src = _plan(
            [len(i) for i in src],
            self.get_n_source_per_class(),
            None,
            self.too_few,
            classes,
            f"{self.source} (source) images",
            min_test=0,
        )
        n_tgt, n_te, short_tgt = _plan(
            [len(i) for i in tgt],
            self.n_target_per_class,
            None,
            self.too_few,
            classes,
            f"{self.target} (target) images",
        )
        if self.too_few == "skip":
            keep = ~(short_src | short_tgt)
            n_src, n_tgt, n_te = n_src * keep, n_tgt * keep, n_te * keep
        rng = check_random_state(self.random_state)
        for _ in range(self.n_splits):
            train, test = [], []
            for s, t, a, b, c in zip(src, tgt, n_src, n_tgt, n_te):
                s, t = rng.permutation(s), rng.permutation(t)
                if "S" in self.setting:
                    train.append(s[:a])
                if "T" in self.setting:
                    train.append(t[:b])
                test.append(t[b : b + c])
            yield np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class OfficialSplit(BaseCrossValidator):
    """The official train/test partition(s) of a dataset, as a splitter.

    Parameters
    ----------
    labels : array-like of str, shape (n_samples,) or (n_partitions, n_samples)
        Partition of each image, such as the ``split`` of the loaders in
        :mod:`sk_decaf.datasets`; a 2-D array (SUN-397's ten partitions) gives one
        split per row.
    train : str or tuple of str, default="train"
        Label(s) of the training images, e.g. ``("train", "val")`` for Flowers-102.
    test : str or tuple of str, default="test"
        Label(s) of the test images. Images with any other label are left out.

    Examples
    --------
    >>> from sk_decaf.model_selection import OfficialSplit
    >>> cv = OfficialSplit(["train", "test", "", "train"])
    >>> [(train.tolist(), test.tolist()) for train, test in cv.split()]
    [([0, 3], [1])]
    """

    def __init__(
        self, labels: ArrayLike, *, train: str | Sequence[str] = "train", test: str | Sequence[str] = "test"
    ) -> None:
        self.labels = labels
        self.train = train
        self.test = test

    def _rows(self) -> np.ndarray:
        labels = np.asarray(self.labels, dtype=object)
        if labels.ndim not in (1, 2):
            raise ValueError(f"labels must be 1-D or 2-D, got shape {labels.shape}.")
        return np.atleast_2d(labels)

    def get_n_splits(self, X: object = None, y: object = None, groups: object = None) -> int:
        """Return the number of partitions (rows of `labels`)."""
        return len(self._rows())

    def split(
        self, X: ArrayLike | None = None, y: object = None, groups: object = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Generate the train and test indices of each partition.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), default=None
            Samples; only their number is checked.
        y, groups : None
            Ignored, exist for API compatibility.

        Yields
        ------
        train, test : ndarray
            Indices of the training and test samples of each partition.
        """
        rows = self._rows()
        if X is not None and num_samples(X) != rows.shape[1]:
            raise ValueError(f"X has {num_samples(X)} samples, labels {rows.shape[1]}.")
        train = [self.train] if isinstance(self.train, str) else list(self.train)
        test = [self.test] if isinstance(self.test, str) else list(self.test)
        for row in rows:
            yield np.flatnonzero(np.isin(row, train)), np.flatnonzero(np.isin(row, test))
