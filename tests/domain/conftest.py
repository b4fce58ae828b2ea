"""Data shared by the tests of the domain family."""

import numpy as np


def rotated_domains(*, n_source, n_target, n_features, seed=0):
    """Two domains with the same spread of variances along rotated axes, and different means.

    Returns ``(X, domain)``: the source rows first, labelled ``"amazon"``, then the target rows,
    ``"webcam"``; the principal axes differ between the domains, so the subspace angles are not zero.
    """
    rng = np.random.RandomState(seed)
    scales = np.linspace(3.0, 0.2, n_features)
    X_source = rng.normal(size=(n_source, n_features)) * scales + 1.0
    rotation = np.linalg.qr(rng.normal(size=(n_features, n_features)))[0]
    X_target = (rng.normal(size=(n_target, n_features)) * scales) @ rotation - 2.0
    X = np.vstack([X_source, X_target])
    domain = np.array(["amazon"] * n_source + ["webcam"] * n_target, dtype=object)
    return X, domain
