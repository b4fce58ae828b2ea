"""load_digits_images: scikit-learn's digits drawn as RGB images, dark ink on white."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits

from sk_decaf.datasets._digits import load_digits_images


def test_images_are_the_digits_inverted_and_scaled():
    data = load_digits_images(size=8)  # at the original size, bilinear scaling is the identity
    digits = load_digits()
    assert len(data.images) == 1797 and data.images[0].shape == (8, 8, 3) and data.images[0].dtype == np.uint8
    assert_array_equal(data.target, digits.target)
    assert_array_equal(data.data, digits.data)
    ink = np.stack([img[..., 0] for img in data.images]).astype(float)
    assert_array_equal(np.stack([img[..., 2] for img in data.images]), ink)  # grey: equal channels
    np.testing.assert_allclose(ink, 255 - digits.images * 255 / 16, atol=0.5)  # 16 (ink) -> black, 0 -> white


def test_size_and_classes():
    data = load_digits_images(size=64, n_class=3)
    assert {img.shape for img in data.images} == {(64, 64, 3)}
    assert_array_equal(np.unique(data.target), [0, 1, 2])
    assert data.images[0][0, 0].tolist() == [255, 255, 255]  # white paper around the digit
    with pytest.raises(ValueError, match="size"):
        load_digits_images(size=0)
