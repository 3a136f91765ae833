"""The HTTP layer: routes per API dialect, wire mapping, middleware and the one error table.

Never imports torch, and Ray only to name Ray's exception types once Ray is loaded.
"""

from .app import create_app
from .service import ModelService, SearchService

__all__ = ["create_app", "ModelService", "SearchService"]
