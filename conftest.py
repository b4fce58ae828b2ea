"""Repository-wide pytest set-up, loaded before anything imports scipy."""

import os

# Let scikit-learn's estimator checks exercise the array API instead of skipping those checks.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
