"""Repository-wide pytest set-up, loaded before anything imports scipy."""

import os

# Let scikit-learn's estimator checks exercise the array API instead of skipping those checks.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
# Figures are made through pyplot (so Jupyter and plt.show() display them): never open a window in tests.
os.environ.setdefault("MPLBACKEND", "Agg")

# docs/: doctest the Markdown pages only, not the Sphinx configuration or the build outputs.
collect_ignore = ["docs/conf.py", "docs/sphinxext"]
collect_ignore_glob = ["docs/_build/*", "docs/generated/*", "docs/auto_examples/*", "docs/api/generated/*"]
