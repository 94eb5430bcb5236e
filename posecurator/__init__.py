"""posecurator: make better training data for 3D human pose estimators.

Layers (data flows one way; lower layers never import higher ones)::

    io -> skeleton, camera -> augment -> scoring -> selection -> synthesis
       -> models, train -> metrics -> pipelines -> report, cli
"""

from posecurator.errors import PoseCuratorError, DataError
from posecurator.poseset import PoseSet

__version__ = "0.1.0"
__all__ = ["PoseSet", "PoseCuratorError", "DataError", "__version__"]
