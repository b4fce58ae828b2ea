"""Torch machinery behind the scikit-learn estimators; knows nothing of scikit-learn."""
