"""Instance retrieval: L2 -> PCA whitening -> L2, nearest neighbours, spatial search."""

from __future__ import annotations

from numbers import Integral
from typing import Literal, overload

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image
from sklearn import get_config
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer
from sklearn.utils import gen_batches
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .._images import ImageItem, load_rgb
from .._sklearn_compat import Interval, RealNotInt, fit_context

__all__ = ["RetrievalIndex", "spatial_windows"]


class RetrievalIndex(BaseEstimator):
    """Rank database images by Euclidean distance of whitened CNN features.

    The recipe of Razavian et al. (2014), used by Azizpour et al. (2015,
    section 5) after Jégou and Chum (2012): features are L2-normalised,
    reduced and whitened by a PCA learned on the database, and L2-normalised
    again (``Normalizer -> PCA(whiten=True) -> Normalizer``, a scikit-learn
    pipeline); queries are answered by Euclidean distance in that space.
    Whitening gives every kept direction unit variance, so keep
    ``n_components`` well below the number of database images: noise
    directions are amplified as much as informative ones.

    **Spatial search.** Pass 3-D arrays ``(n_images, n_windows, n_features)``
    holding the features of several windows per image (see
    :func:`spatial_windows`): the distance of two images is then the minimum
    distance between any window of one and any window of the other, which
    finds objects that fill only part of an image. The PCA is learned on all
    database windows. 2-D input is one window per image.

    Parameters
    ----------
    n_components : int or float, default=None
        Dimension kept by the PCA (a float in (0, 1): that fraction of the
        variance). None keeps ``min(n_database_windows - 1, n_features)``.

    whiten : bool, default=True
        Divide each principal component by its standard deviation; False
        keeps plain PCA (still between the two L2 normalisations).

    n_neighbors : int, default=None
        Number of neighbours returned by :meth:`kneighbors` and
        :meth:`predict`; None ranks the whole database.

    Attributes
    ----------
    pipeline_ : Pipeline
        The fitted ``Normalizer -> PCA -> Normalizer`` applied to every window.

    embedding_ : ndarray of shape (n_samples_fit_, n_windows_, n_components_)
        Database windows after ``pipeline_``.

    n_samples_fit_ : int
        Number of database images.

    n_windows_ : int
        Windows per database image (1 for 2-D input).

    n_components_ : int
        Dimension of the embedding.

    n_features_in_ : int
        Number of features per window seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    spatial_windows : The 1 + 4 + 9 + 16 sub-windows of an image.
    mean_average_precision : Evaluate the rankings.
    sklearn.neighbors.NearestNeighbors : Plain nearest neighbours.

    References
    ----------
    .. [1] A. Sharif Razavian, H. Azizpour, J. Sullivan and S. Carlsson. "CNN
       Features off-the-shelf: an Astounding Baseline for Recognition". CVPR
       Workshops 2014 (visual instance retrieval).
    .. [2] H. Azizpour, A. Sharif Razavian, J. Sullivan, A. Maki and
       S. Carlsson. "From Generic to Specific Deep Representations for Visual
       Recognition". CVPR Workshops 2015, section 5.
    .. [3] H. Jégou and O. Chum. "Negative evidences and co-occurrences in
       image retrieval: the benefit of PCA and whitening". ECCV 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_decaf.heads import RetrievalIndex
    >>> rng = np.random.RandomState(0)
    >>> database = rng.normal(size=(20, 8))
    >>> index = RetrievalIndex(n_components=4, n_neighbors=3).fit(database)
    >>> index.predict(database[[5, 7]] + 0.01)[:, 0]  # each finds itself first
    array([5, 7])
    >>> distances, indices = index.kneighbors()  # database vs itself, no self-match
    >>> indices.shape
    (20, 3)
    """

    _parameter_constraints: dict = {
        "n_components": [
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="neither"),
            None,
        ],
        "whiten": ["boolean"],
        "n_neighbors": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self, n_components: int | float | None = None, *, whiten: bool = True, n_neighbors: int | None = None
    ) -> None:
        self.n_components = n_components
        self.whiten = whiten
        self.n_neighbors = n_neighbors

    def _windows(self, X: ArrayLike, *, reset: bool) -> np.ndarray:
        """Validate 2-D or 3-D input; return it as (n_images, n_windows, n_features)."""
        n_windows = 1
        if np.ndim(X) == 3:
            arr = check_array(X, allow_nd=True, dtype=[np.float64, np.float32])
            n_windows, X = arr.shape[1], arr.reshape(-1, arr.shape[2])
        flat = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], ensure_min_samples=1 + reset)
        return flat.reshape(-1, n_windows, flat.shape[1])

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: object = None) -> RetrievalIndex:
        """Learn the whitening on the database and store its embedding.

        Parameters
        ----------
        X : array-like of shape (n_images, n_features) or \
                (n_images, n_windows, n_features)
            Database features, one row (or one row per window) per image.

        y : Ignored
            Not used, present here for API consistency by convention.

        Returns
        -------
        self : object
            Fitted index.
        """
        windows = self._windows(X, reset=True)
        self.n_samples_fit_, self.n_windows_, n_features = windows.shape
        flat = windows.reshape(-1, n_features)
        n_components = self.n_components
        if n_components is None:
            n_components = min(flat.shape[0] - 1, n_features)
        pca = PCA(n_components=n_components, whiten=self.whiten, svd_solver="full")
        self.pipeline_ = make_pipeline(Normalizer(), pca, Normalizer()).fit(flat)
        self.embedding_ = self.pipeline_.transform(flat).reshape(*windows.shape[:2], -1)
        self.n_components_ = self.embedding_.shape[2]
        return self

    @overload
    def kneighbors(
        self, X: ArrayLike | None = ..., n_neighbors: int | None = ..., return_distance: Literal[True] = ...
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def kneighbors(
        self, X: ArrayLike | None = ..., n_neighbors: int | None = ..., *, return_distance: Literal[False]
    ) -> np.ndarray: ...
    @overload
    def kneighbors(
        self, X: ArrayLike | None, n_neighbors: int | None, return_distance: Literal[False]
    ) -> np.ndarray: ...
    @overload
    def kneighbors(
        self, X: ArrayLike | None = ..., n_neighbors: int | None = ..., return_distance: bool = ...
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray: ...
    def kneighbors(
        self, X: ArrayLike | None = None, n_neighbors: int | None = None, return_distance: bool = True
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """Find the nearest database images of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or \
                (n_queries, n_windows, n_features), default=None
            Query features; any number of windows per query. None queries the
            database with itself, each image excluded from its own results.

        n_neighbors : int, default=None
            Defaults to the ``n_neighbors`` parameter, else the whole database
            (minus the query itself when ``X`` is None).

        return_distance : bool, default=True
            Whether to return the distances.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors)
            Minimum distance over window pairs, ascending; if ``return_distance``.

        indices : ndarray of shape (n_queries, n_neighbors)
            Database indices, nearest first (ties: lower index first).
        """
        check_is_fitted(self)
        exclude_self = X is None
        queries = self.embedding_ if X is None else self._embed(X)
        n_available = self.n_samples_fit_ - exclude_self
        if n_neighbors is None:
            n_neighbors = n_available if self.n_neighbors is None else self.n_neighbors
        if not 1 <= n_neighbors <= n_available:
            raise ValueError(f"Expected 1 <= n_neighbors <= {n_available}, got {n_neighbors}.")
        database = self.embedding_.reshape(-1, self.n_components_)
        row_bytes = 8 * queries.shape[1] * database.shape[0]
        batch = max(1, int(get_config()["working_memory"] * 2**20 // row_bytes))
        distances = np.empty((len(queries), n_neighbors))
        indices = np.empty((len(queries), n_neighbors), dtype=np.intp)
        for rows in gen_batches(len(queries), batch):
            chunk = queries[rows]  # minimum over all (query window, database window) pairs
            pairs = euclidean_distances(chunk.reshape(-1, self.n_components_), database)
            pairs = pairs.reshape(*chunk.shape[:2], self.n_samples_fit_, self.n_windows_)
            image_dist = pairs.min(axis=(1, 3))
            if exclude_self:
                image_dist[np.arange(len(chunk)), np.arange(rows.start, rows.stop)] = np.inf
            order = np.argsort(image_dist, axis=1, kind="stable")[:, :n_neighbors]
            indices[rows] = order
            distances[rows] = np.take_along_axis(image_dist, order, axis=1)
        return (distances, indices) if return_distance else indices

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Ranked database indices of each query, nearest first.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or \
                (n_queries, n_windows, n_features)
            Query features.

        Returns
        -------
        indices : ndarray of shape (n_queries, n_neighbors)
            ``kneighbors(X, return_distance=False)``.
        """
        return self.kneighbors(X, return_distance=False)

    def _embed(self, X: ArrayLike) -> np.ndarray:
        windows = self._windows(X, reset=False)
        flat = self.pipeline_.transform(windows.reshape(-1, windows.shape[2]))
        return flat.reshape(*windows.shape[:2], -1)


def _window_boxes(width: int, height: int, levels: int) -> np.ndarray:
    """Pixel boxes ``(left, upper, right, lower)`` of the windows, in order.

    Level ``k`` (1 to ``levels``) is a ``k x k`` grid of windows of side
    ``2 / (k + 1)`` of the image with stride ``1 / (k + 1)``, listed row by
    row; the edges are the grid lines ``round(j * width / (k + 1))``.
    """
    boxes = []
    for k in range(1, levels + 1):
        xs = np.rint(np.arange(k + 2) * width / (k + 1)).astype(int)
        ys = np.rint(np.arange(k + 2) * height / (k + 1)).astype(int)
        boxes += [(xs[c], ys[r], xs[c + 2], ys[r + 2]) for r in range(k) for c in range(k)]
    return np.asarray(boxes, dtype=int)


def spatial_windows(image: ImageItem, levels: int = 4) -> list[Image.Image]:
    """Crop the sub-windows used by spatial search (Azizpour et al., section 5).

    Level ``k = 1, ..., levels`` tiles the image with ``k x k`` overlapping
    windows, each ``2 / (k + 1)`` of the image width and height, with stride
    ``1 / (k + 1)``: the whole image, 4 windows of 4/9 of its area, 9 of
    4/16 and 16 of 4/25 for ``levels=4`` (30 windows in all).

    Parameters
    ----------
    image : PIL.Image.Image, str, os.PathLike, ndarray or Crop
        The image: anything :class:`~sk_decaf.DeCAFTransformer` reads, read by the
        same reader (EXIF orientation applied, converted to RGB; a bad file is a
        ``ValueError`` naming it).

    levels : int, default=4
        Number of levels, giving ``levels (levels + 1) (2 levels + 1) / 6`` windows.

    Returns
    -------
    crops : list of PIL.Image.Image
        Level by level, and within a level row by row, left to right:
        ``[whole, top-left, top-right, bottom-left, bottom-right, ...]``.

    References
    ----------
    .. [1] H. Azizpour et al. "From Generic to Specific Deep Representations
       for Visual Recognition". CVPR Workshops 2015, section 5.

    Examples
    --------
    >>> from PIL import Image
    >>> from sk_decaf.heads import spatial_windows
    >>> crops = spatial_windows(Image.new("RGB", (60, 30)), levels=2)
    >>> [crop.size for crop in crops]
    [(60, 30), (40, 20), (40, 20), (40, 20), (40, 20)]

    Window features for :class:`RetrievalIndex`, with ``paths`` the images::

        crops = [c for p in paths for c in spatial_windows(p)]
        X = DeCAFTransformer().fit_transform(crops).reshape(len(paths), 30, -1)
    """
    if not isinstance(levels, Integral) or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}.")
    image = load_rgb(image)
    if min(image.size) < levels + 1:
        raise ValueError(f"Image of size {image.size} is too small for {levels} levels.")
    return [image.crop(tuple(int(v) for v in box)) for box in _window_boxes(*image.size, levels)]
