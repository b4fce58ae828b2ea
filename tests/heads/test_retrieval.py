import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError, UndefinedMetricWarning
from sklearn.metrics import average_precision_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import normalize

from sk_decaf import RetrievalIndex, mean_average_precision, spatial_windows
from sk_decaf.heads._retrieval import _window_boxes

# ---------------------------------------------------------------- mAP

Y_DATABASE = [0, 1, 0, 1, 0]
Y_QUERY = [0, 1, 1]
RANKING = [
    [0, 1, 2, 3, 4],  # label 0: relevant at ranks 1, 3, 5
    [4, 3, 2, 1, 0],  # label 1: relevant at ranks 2, 4
    [1, 3, 0, 2, 4],  # label 1: relevant at ranks 1, 2
]


def test_map_by_hand():
    ap = [(1 / 1 + 2 / 3 + 3 / 5) / 3, (1 / 2 + 2 / 4) / 2, (1 / 1 + 2 / 2) / 2]
    assert_allclose(mean_average_precision(Y_QUERY, Y_DATABASE, RANKING), np.mean(ap))
    # Oxford compute_ap: trapezoids between precision before and at each hit
    # (precision 1 before the first rank).
    trapezoid = [
        ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2 + (2 / 4 + 3 / 5) / 2) / 3,
        ((0 / 1 + 1 / 2) / 2 + (1 / 3 + 2 / 4) / 2) / 2,
        ((1 + 1) / 2 + (1 + 1) / 2) / 2,
    ]
    assert_allclose(
        mean_average_precision(Y_QUERY, Y_DATABASE, RANKING, interpolation="trapezoid"),
        np.mean(trapezoid),
    )


def test_map_truncated_ranking_and_distances():
    # Only the top 2 retrieved: the relevant items at ranks 3 and 5 count 0.
    assert_allclose(mean_average_precision([0], Y_DATABASE, [[0, 1]]), (1 / 1) / 3)
    # Distances are ranked ascending: same answer as the ranking they induce.
    distances = np.empty((3, 5))
    for i, ranked in enumerate(RANKING):
        distances[i, ranked] = np.arange(5) / 10
    assert_allclose(
        mean_average_precision(Y_QUERY, Y_DATABASE, distances),
        mean_average_precision(Y_QUERY, Y_DATABASE, RANKING),
    )


def test_map_matches_sklearn_average_precision():
    rng = np.random.RandomState(0)
    y_database = rng.randint(4, size=50)
    y_query = rng.randint(4, size=8)
    distances = rng.rand(8, 50)
    expected = np.mean([average_precision_score(y_database == y, -d) for y, d in zip(y_query, distances)])
    assert_allclose(mean_average_precision(y_query, y_database, distances), expected)


def test_map_exclude_self_and_undefined_queries():
    labels = [0, 0, 1, 2]
    # Self-ranking of the database: every item ranks itself first.
    ranking = [[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]]
    # Queries 0 and 1 find their single other relevant item at rank 1 (after
    # dropping themselves); labels 1 and 2 have no other item: left out.
    with pytest.warns(UndefinedMetricWarning, match="2 of 4 queries"):
        score = mean_average_precision(labels, labels, ranking, exclude_self=True)
    assert score == 1.0
    # Without exclusion the query itself counts: AP 1 for everyone.
    assert mean_average_precision(labels, labels, ranking) == 1.0
    with pytest.raises(ValueError, match="No query has a relevant item"):
        mean_average_precision([5], [0, 1], [[0, 1]])
    with pytest.raises(ValueError, match="exclude_self"):
        mean_average_precision([0], [0, 1], [[0, 1]], exclude_self=True)
    with pytest.raises(ValueError, match="outside"):
        mean_average_precision([0], [0, 1], [[0, 2]])


# ---------------------------------------------------------------- index


def _database(n_images=30, n_features=12, seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n_images, n_features)) + rng.normal(size=n_features)


def test_kneighbors_matches_sklearn_pipeline_and_nearest_neighbors():
    X = _database()
    queries = _database(n_images=5, seed=1)
    index = RetrievalIndex(n_components=6, n_neighbors=4).fit(X)
    # Hand-written L2 -> PCA whitening -> L2 with sklearn's parts.
    pca = PCA(6, whiten=True, svd_solver="full").fit(normalize(X))
    embed = lambda Z: normalize(pca.transform(normalize(Z)))  # noqa: E731
    nn = NearestNeighbors(n_neighbors=4).fit(embed(X))
    expected_dist, expected_ind = nn.kneighbors(embed(queries))
    distances, indices = index.kneighbors(queries)
    assert_array_equal(indices, expected_ind)
    assert_allclose(distances, expected_dist, atol=1e-10)
    assert_array_equal(index.predict(queries), expected_ind)
    assert index.embedding_.shape == (30, 1, 6)
    # X=None: the database against itself, each image left out of its list.
    self_dist, self_ind = index.kneighbors()
    exp_dist, exp_ind = nn.kneighbors()
    assert_array_equal(self_ind, exp_ind)
    assert_allclose(self_dist, exp_dist, atol=1e-10)
    # Full ranking by default; a query equal to a database item finds it first.
    full = RetrievalIndex(n_components=6).fit(X).predict(X[[3, 17]])
    assert full.shape == (2, 30)
    assert_array_equal(full[:, 0], [3, 17])
    assert_array_equal(np.sort(full, axis=1), np.tile(np.arange(30), (2, 1)))


@pytest.mark.parametrize("n_components", [5, None])
def test_whitened_components_have_unit_variance(n_components):
    X = _database()
    index = RetrievalIndex(n_components=n_components).fit(X)
    whitened = index.pipeline_[:2].transform(X)  # before the final L2
    assert whitened.shape[1] == index.n_components_ == (n_components or 12)
    assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-10)
    assert_allclose(whitened.var(axis=0, ddof=1), 1.0, rtol=1e-10)
    assert_allclose(np.cov(whitened, rowvar=False), np.eye(index.n_components_), atol=1e-10)
    assert_allclose(np.linalg.norm(index.embedding_[:, 0], axis=1), 1.0)
    plain = RetrievalIndex(n_components=5, whiten=False).fit(X)
    variances = plain.pipeline_[:2].transform(X).var(axis=0, ddof=1)
    assert_allclose(variances, plain.pipeline_[1].explained_variance_, rtol=1e-10)
    assert variances[0] > 2 * variances[-1]


def test_spatial_search_matches_a_sub_window():
    rng = np.random.RandomState(0)
    n_features = 16
    database = rng.normal(size=(6, 5, n_features))
    query = rng.normal(size=(1, 5, n_features))
    query[0, 3] = database[2, 4]  # only one sub-window of image 2 matches
    index = RetrievalIndex(n_components=10).fit(database)
    distances, indices = index.kneighbors(query)
    assert indices[0, 0] == 2
    assert_allclose(distances[0, 0], 0.0, atol=1e-6)
    # Every distance is the minimum over the 5 x 5 window pairs (brute force).
    q = index.pipeline_.transform(query[0])
    for dist, j in zip(distances[0], indices[0]):
        d = index.pipeline_.transform(database[j])
        pairs = np.linalg.norm(q[:, None, :] - d[None, :, :], axis=2)
        # euclidean_distances expands |a - b|^2: about sqrt(eps) near zero.
        assert_allclose(dist, pairs.min(), atol=1e-7)
    # With only the whole-image windows the match is not found.
    whole = RetrievalIndex(n_components=5).fit(database[:, 0])
    assert whole.kneighbors(query[:, 0], n_neighbors=1)[0][0, 0] > 0.1
    # A 2-D query against a windowed database: one window per query.
    _, ind = index.kneighbors(database[4, 1][None, :], n_neighbors=1)
    assert ind[0, 0] == 4


def test_query_chunks_give_the_same_answer():
    import sklearn

    rng = np.random.RandomState(1)
    database = rng.normal(size=(40, 3, 8))
    queries = rng.normal(size=(25, 3, 8))
    index = RetrievalIndex(n_components=6).fit(database)
    expected = index.kneighbors(queries)
    with sklearn.config_context(working_memory=0.0001):  # ~1 query per chunk
        chunked = index.kneighbors(queries)
    assert_array_equal(chunked[1], expected[1])
    assert_allclose(chunked[0], expected[0])


def test_float32_errors_pickle_clone():
    X = _database()
    X[7] = X[3] + 1e-9 * np.random.RandomState(5).normal(size=12)  # a near-duplicate: a tie in float32
    index = RetrievalIndex(n_components=4, n_neighbors=3)
    with pytest.raises(NotFittedError):
        index.predict(X)
    index.fit(X.astype(np.float32))
    index64 = RetrievalIndex(n_components=4, n_neighbors=3).fit(X)
    assert index.embedding_.dtype == np.float32
    # float32 and float64 may order near-ties differently: the float32 top 3 are a top 3 of the float64
    # index, its distances those of the float64 ranking to float32 precision.
    dist32, ind32 = index.kneighbors(X)
    dist64, ind64 = index64.kneighbors(X, n_neighbors=30)
    assert_allclose(dist32, dist64[:, :3], rtol=1e-4, atol=1e-5)
    rank64 = np.argsort(ind64, axis=1)  # the float64 rank of every database image, per query
    true_dist = np.take_along_axis(dist64, np.take_along_axis(rank64, ind32, axis=1), axis=1)
    assert_allclose(true_dist, dist64[:, :3], rtol=1e-4, atol=1e-5)
    assert set(ind32[3, :2]) == set(ind32[7, :2]) == {3, 7}  # the twins find each other, in either order
    with pytest.raises(ValueError, match="n_neighbors"):
        index.kneighbors(X, n_neighbors=31)
    with pytest.raises(ValueError, match="n_neighbors"):
        index.kneighbors(n_neighbors=30)  # only 29 others
    with pytest.raises(ValueError, match="features"):
        index.predict(X[:, :5])
    restored = pickle.loads(pickle.dumps(index))
    assert_array_equal(restored.kneighbors(X)[1], index.kneighbors(X)[1])
    fresh = clone(index)
    assert fresh.get_params() == index.get_params()
    assert not hasattr(fresh, "embedding_")


# ---------------------------------------------------------------- windows


def test_window_boxes_geometry():
    # 60 x 120 divides exactly by 2, 3, 4 and 5.
    boxes = _window_boxes(60, 120, 4)
    assert len(boxes) == 1 + 4 + 9 + 16
    assert_array_equal(boxes[0], [0, 0, 60, 120])
    assert_array_equal(boxes[1:5], [[0, 0, 40, 80], [20, 0, 60, 80], [0, 40, 40, 120], [20, 40, 60, 120]])
    start = 1 + 4 + 9
    for k, first in [(3, 5), (4, start)]:
        level = boxes[first : first + k * k]
        width, height = 2 * 60 // (k + 1), 2 * 120 // (k + 1)
        assert_array_equal(level[:, 2] - level[:, 0], width)
        assert_array_equal(level[:, 3] - level[:, 1], height)
        # Row by row, left to right, stride 1 / (k + 1).
        rows, cols = np.divmod(np.arange(k * k), k)
        assert_array_equal(level[:, 0], cols * 60 // (k + 1))
        assert_array_equal(level[:, 1], rows * 120 // (k + 1))
        assert level[-1, 2] == 60 and level[-1, 3] == 120
    # Area fractions of the paper: 1, 4/9, 4/16, 4/25.
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (60 * 120)
    assert_allclose(areas[[0, 1, 5, 14]], [1, 4 / 9, 4 / 16, 4 / 25])
    assert [len(_window_boxes(50, 50, n)) for n in (1, 2, 3, 4, 5)] == [1, 5, 14, 30, 55]


def test_spatial_windows_crops_the_right_pixels():
    from PIL import Image

    # Pixel (x, y) has red = x and green = y, so a crop tells where it came from.
    xs, ys = np.meshgrid(np.arange(101), np.arange(70))
    array = np.stack([xs, ys, np.zeros_like(xs)], axis=2).astype(np.uint8)
    image = Image.fromarray(array)
    crops = spatial_windows(image)
    assert len(crops) == 30
    boxes = _window_boxes(101, 70, 4)
    for crop, (left, upper, right, lower) in zip(crops, boxes):
        assert crop.size == (right - left, lower - upper)
        pixels = np.asarray(crop)
        assert pixels[0, 0, 0] == left and pixels[0, 0, 1] == upper
        assert pixels[-1, -1, 0] == right - 1 and pixels[-1, -1, 1] == lower - 1
    # Not divisible: level-2 grid lines round(j * 101 / 3) = 0, 34, 67, 101 and
    # round(j * 70 / 3) = 0, 23, 47, 70, so every window is 67 x 47.
    assert [c.size for c in crops[1:5]] == [(67, 47)] * 4
    assert_array_equal(boxes[1:5], [[0, 0, 67, 47], [34, 0, 101, 47], [0, 23, 67, 70], [34, 23, 101, 70]])
    # Arrays and paths work too; tiny images are refused.
    assert [c.size for c in spatial_windows(array, levels=2)] == [c.size for c in crops[:5]]
    with pytest.raises(ValueError, match="too small"):
        spatial_windows(Image.new("RGB", (4, 4)), levels=4)
    with pytest.raises(ValueError, match="levels"):
        spatial_windows(image, levels=0)


def test_spatial_windows_from_path(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (30, 60), color=(10, 20, 30)).save(path)
    crops = spatial_windows(str(path), levels=2)
    assert [c.size for c in crops] == [(30, 60), (20, 40), (20, 40), (20, 40), (20, 40)]
    assert crops[3].getpixel((0, 0)) == (10, 20, 30)
