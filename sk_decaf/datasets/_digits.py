"""scikit-learn's handwritten digits drawn as RGB images: a small task far from ImageNet, with no download."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.utils import Bunch

__all__ = ["load_digits_images"]


def load_digits_images(*, size: int = 64, n_class: int = 10) -> Bunch:
    """Load scikit-learn's 8x8 handwritten digits as ``size x size`` RGB images, dark ink on white.

    The 1,797 images of :func:`sklearn.datasets.load_digits` (UCI optical digits, 16 grey levels)
    are inverted (ink 0 is white paper, 16 is black), scaled by bilinear interpolation and repeated
    over three channels. Ten classes of line drawings, nothing like ImageNet photographs: the task on
    which fine-tuning pays off over frozen features (see the fine-tuning guide). The data ships with
    scikit-learn, so nothing is downloaded.

    Parameters
    ----------
    size : int, default=64
        Side of the square images, in pixels.
    n_class : int, default=10
        Number of classes (digits ``0`` to ``n_class - 1``), as in ``load_digits``.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` (list of ``(size, size, 3)`` uint8 arrays, accepted wherever the estimators take
        images), ``target`` (int array), ``target_names`` (the digits), ``data`` (the original
        ``(n_samples, 64)`` grey levels 0 to 16, for raw-pixel baselines).

    Examples
    --------
    >>> from sk_decaf.datasets._digits import load_digits_images
    >>> digits = load_digits_images(size=32)
    >>> len(digits.images), digits.images[0].shape, digits.images[0].dtype
    (1797, (32, 32, 3), dtype('uint8'))
    >>> int(digits.images[0].max()), digits.target[:5].tolist()
    (255, [0, 1, 2, 3, 4])
    """
    from sklearn.datasets import load_digits

    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels; got {size!r}.")
    digits = load_digits(n_class=n_class)
    ink = np.round(255 - digits.images * (255 / 16)).astype(np.uint8)
    images = [
        np.asarray(Image.fromarray(g, "L").resize((int(size),) * 2, Image.Resampling.BILINEAR).convert("RGB"))
        for g in ink
    ]
    return Bunch(images=images, target=digits.target, target_names=digits.target_names, data=digits.data)
