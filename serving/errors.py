"""The one error the service answers with: an HTTP status, a FastAPI-style detail and a bounded kind for metrics.

FastAPI-free, so the prediction function (``serving.predict``) raises it as the routes do; ``serving.main`` maps it to a
response in one exception handler.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A client-visible error: status code, detail (a message or one entry per field) and kind (a metric label)."""

    def __init__(self, status: int, detail: Any, kind: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.kind, self.headers = status, detail, kind, headers
