"""Domain adaptation: transformers that use the domain of each sample (``sample_domain``).

One family, one base class (:class:`BaseDomainTransformer`), one set of label rules (readable
names with ``target_domain``, or skada's integers: ``>= 0`` source, ``< 0`` target; unlabelled
samples are target samples) and one contract (:func:`yield_domain_transformer_checks`, run by
:func:`check_domain_transformer`) checked on every member:

* :class:`DomainAugment` -- Daumé III's feature augmentation (DeCAF Table 1), supervised;
* :class:`CORAL` -- correlation alignment (Sun et al. 2016);
* :class:`SubspaceAlignment` -- PCA subspace alignment (Fernando et al. 2013);
* :class:`GeodesicFlowKernel` -- the geodesic flow kernel as features (Gong et al. 2012);
* :class:`NoAdaptation` -- the identity, the baseline of a search over adaptation choices.

They request ``sample_domain`` by default: with ``sklearn.set_config(enable_metadata_routing=True)``
they work in a ``Pipeline``, a ``GridSearchCV`` with
:class:`~sk_decaf.model_selection.DomainAdaptationSplit` as ``cv``, and in ``skada.make_da_pipeline``.
"""

from ._base import BaseDomainTransformer
from ._checks import check_domain_transformer, yield_domain_transformer_checks
from ._coral import CORAL
from ._domain_augment import DomainAugment
from ._gfk import GeodesicFlowKernel
from ._no_adaptation import NoAdaptation
from ._subspace_alignment import SubspaceAlignment

__all__ = [
    "BaseDomainTransformer",
    "CORAL",
    "DomainAugment",
    "GeodesicFlowKernel",
    "NoAdaptation",
    "SubspaceAlignment",
    "check_domain_transformer",
    "yield_domain_transformer_checks",
]
