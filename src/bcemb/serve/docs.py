"""``/docs``, ``/redoc`` and ``/openapi.json`` (opt in: ``bcemb serve --docs``), from FastAPI.

The routes below only describe the API for the schema; requests to them are answered by
:class:`bcemb.serve.app.EmbeddingService` and never reach this app.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

__all__ = ["docs_app"]


class EmbeddingsRequest(BaseModel):
    """Body of ``POST /embeddings`` (for the schema; the app checks bodies itself)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[StrictStr | StrictInt] = Field(description="Original node ids.")
    version: StrictInt | None = Field(default=None, description="Target version; null for the latest.")
    kind: Literal["user", "item"] = "user"
    encoding: Literal["json", "base64", "binary"] = Field(
        default="json",
        description="json: nested lists; base64: little-endian float32 in base64; binary: "
        "raw float32 (application/octet-stream) with x-bcemb-shape/-dtype/-version headers.",
    )


def docs_app() -> FastAPI:
    """A FastAPI app serving the API's documentation pages and schema."""
    app = FastAPI(
        title="bcemb embedding store",
        description="Backward compatible embeddings of any version, computed on the fly from the latest.",
    )

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and the served version; 503 "degraded" while a new publish cannot be opened."""
        raise NotImplementedError

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        """Every version with its dimension, parent, method and state."""
        raise NotImplementedError

    @app.post("/embeddings")
    def embeddings(request: EmbeddingsRequest) -> dict[str, Any]:
        """Vectors in version ``j`` (404 unknown ids/version, 413 too large, 422 malformed)."""
        raise NotImplementedError

    return app
