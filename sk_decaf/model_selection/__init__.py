"""model_selection: splitters for the DeCAF evaluation protocols."""

from ._split import DomainAdaptationSplit, OfficialSplit, PerClassSplit

__all__ = ["DomainAdaptationSplit", "OfficialSplit", "PerClassSplit"]
