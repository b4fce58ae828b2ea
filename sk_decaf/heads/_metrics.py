"""Retrieval metrics: average precision per query and its mean over queries."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils import column_or_1d

from .._sklearn_compat import StrOptions, validate_params

__all__ = ["mean_average_precision"]


@validate_params(
    {
        "y_query": ["array-like"],
        "y_database": ["array-like"],
        "ranking_or_distances": ["array-like"],
        "exclude_self": ["boolean"],
        "interpolation": [StrOptions({"none", "trapezoid"})],
    },
    prefer_skip_nested_validation=True,
)
def mean_average_precision(
    y_query: ArrayLike,
    y_database: ArrayLike,
    ranking_or_distances: ArrayLike,
    *,
    exclude_self: bool = False,
    interpolation: str = "none",
) -> float:
    """Mean over queries of the average precision (AP) of each ranked list.

    A database item is relevant to a query when their labels are equal. For
    one query with ``R`` relevant items in the database and a ranked list in
    which the ``j``-th relevant item appears at rank ``r_j`` (1-based), the
    non-interpolated AP is ``(1 / R) * sum_j (j / r_j)``, the mean of the
    precisions at the ranks of the relevant items (relevant items missing
    from a truncated list contribute 0). This is the area under the
    precision-recall step curve, i.e. scikit-learn's
    :func:`~sklearn.metrics.average_precision_score` for a full ranking.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,)
        Label of each query (e.g. class or landmark id).

    y_database : array-like of shape (n_database,)
        Label of each database item.

    ranking_or_distances : array-like of shape (n_queries, n_ranked)
        Either an **integer** array of database indices per query, best
        first (as returned by :meth:`RetrievalIndex.predict`; ``n_ranked``
        may be smaller than ``n_database``), or a **floating** array of shape
        ``(n_queries, n_database)`` of distances, ranked in ascending order
        (ties broken by database index).

    exclude_self : bool, default=False
        For a query set that is the database itself (query ``i`` is database
        item ``i``): drop item ``i`` from the ranking of query ``i`` and from
        its relevant items, as in leave-one-out evaluation (Holidays, UKB).

    interpolation : {"none", "trapezoid"}, default="none"
        "none" is the non-interpolated AP above. "trapezoid" integrates the
        precision-recall curve with the trapezoidal rule (precision 1 at
        recall 0), the convention of the ``compute_ap`` program of the Oxford
        and Paris buildings benchmarks and of the INRIA Holidays scripts.

    Returns
    -------
    score : float
        Mean AP over the queries that have at least one relevant item.

    Warns
    -----
    UndefinedMetricWarning
        If some queries have no relevant item; they are left out of the mean.

    See Also
    --------
    RetrievalIndex : Produces the rankings.
    sklearn.metrics.average_precision_score : AP of one binary problem.

    References
    ----------
    .. [1] J. Philbin, O. Chum, M. Isard, J. Sivic and A. Zisserman. "Object
       retrieval with large vocabularies and fast spatial matching". CVPR 2007
       (Oxford buildings protocol).
    .. [2] H. Jégou, M. Douze and C. Schmid. "Hamming embedding and weak
       geometric consistency for large scale image search". ECCV 2008
       (INRIA Holidays).

    Examples
    --------
    >>> from sk_decaf.heads import mean_average_precision
    >>> y_database = [0, 1, 0, 1, 0]
    >>> ranking = [[0, 1, 2, 3, 4],   # relevant at ranks 1, 3, 5
    ...            [4, 3, 2, 1, 0]]   # relevant at ranks 2, 4
    >>> ap0 = (1 / 1 + 2 / 3 + 3 / 5) / 3
    >>> ap1 = (1 / 2 + 2 / 4) / 2
    >>> bool(abs(mean_average_precision([0, 1], y_database, ranking)
    ...          - (ap0 + ap1) / 2) < 1e-12)
    True
    """
    queries = column_or_1d(y_query)
    database = column_or_1d(y_database)
    ranking = _as_ranking(ranking_or_distances, len(queries), len(database))
    if exclude_self and len(queries) != len(database):
        raise ValueError(
            "exclude_self=True needs the query set to be the database, got "
            f"{len(queries)} queries and {len(database)} database items."
        )
    ap = np.full(len(queries), np.nan)
    for i, ranked in enumerate(ranking):
        relevant = database == queries[i]
        if exclude_self:
            relevant[i] = False
            ranked = ranked[ranked != i]
        n_relevant = relevant.sum()
        if n_relevant:
            ap[i] = _average_precision(relevant[ranked], n_relevant, interpolation)
    undefined = np.isnan(ap)
    if undefined.all():
        raise ValueError("No query has a relevant item in the database.")
    if undefined.any():
        warnings.warn(
            f"{undefined.sum()} of {len(ap)} queries have no relevant item in the "
            "database; they are left out of the mean.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    return float(np.mean(ap[~undefined]))


def _as_ranking(ranking_or_distances: ArrayLike, n_queries: int, n_database: int) -> np.ndarray:
    """Integer ranking of shape (n_queries, n_ranked) from indices or distances."""
    values = np.asarray(ranking_or_distances)
    if values.ndim != 2 or values.shape[0] != n_queries:
        raise ValueError(f"ranking_or_distances must have shape (n_queries={n_queries}, ...), got {values.shape}.")
    if np.issubdtype(values.dtype, np.floating):
        if values.shape[1] != n_database:
            raise ValueError(f"distances must have one column per database item ({n_database}), got {values.shape[1]}.")
        return np.argsort(values, axis=1, kind="stable")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"ranking must be integer indices, got dtype {values.dtype}.")
    if values.size and (values.min() < 0 or values.max() >= n_database):
        raise ValueError(f"ranking holds indices outside [0, {n_database}).")
    if values.shape[1] > n_database:
        raise ValueError(f"ranking has more than n_database={n_database} columns.")
    return values


def _average_precision(hits: np.ndarray, n_relevant: int, interpolation: str) -> float:
    """AP of one ranked list; ``hits[r]`` tells if rank ``r`` (0-based) is relevant."""
    ranks = np.flatnonzero(hits)  # 0-based ranks of the retrieved relevant items
    n_before = np.arange(len(ranks))  # relevant items ranked above each one
    precision_at = (n_before + 1) / (ranks + 1)
    if interpolation == "none":
        return precision_at.sum() / n_relevant
    # Trapezoid between the precision just before the hit and at the hit.
    precision_before = np.divide(n_before, ranks, out=np.ones(len(ranks)), where=ranks > 0)
    return ((precision_before + precision_at) / 2).sum() / n_relevant
