"""The Query/Retrieve service class (PS3.4 Annex C): C-FIND, C-MOVE and C-GET SCP.

- :mod:`.models` — the information models, their SOP classes and levels, and the rules an
  identifier must follow (A900 otherwise);
- :mod:`.find` — C-FIND SCP: matches streamed from the index;
- :mod:`.retrieve` — C-MOVE and C-GET SCP: sub-operations, progress, cancel;
- :mod:`.service` — :class:`QueryRetrieve`, the node service and its ``[query_retrieve]`` table.
"""

from .models import MODELS, QUERY_MODELS, QueryModel, check_identifier, model_of
from .service import QueryRetrieve, QueryRetrieveConfig

__all__ = [
    "MODELS",
    "QUERY_MODELS",
    "QueryModel",
    "QueryRetrieve",
    "QueryRetrieveConfig",
    "check_identifier",
    "model_of",
]
