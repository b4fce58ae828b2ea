"""Cross-validation splitters of the DeCAF protocols: n images per class, source/target domains, official splits."""

from ._split import DomainAdaptationSplit, OfficialSplit, PerClassSplit

__all__ = ["DomainAdaptationSplit", "OfficialSplit", "PerClassSplit"]
