"""The REST service (FastAPI): jobs submitted over HTTP run in the background on the Ray pool."""

from autopeft.service.app import JobRequest, create_app
from autopeft.service.client import ServiceClient
from autopeft.service.limits import ServiceLimits
from autopeft.service.runner import JobRunner

__all__ = ["JobRequest", "JobRunner", "ServiceClient", "ServiceLimits", "create_app"]
