"""Liveness, readiness and metrics: unauthenticated, for load balancers and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from accrual.api.deps import app_services
from accrual.services import health

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers and its schema is current")
def readyz(request: Request) -> JSONResponse:
    state = health.readiness(app_services(request).db)
    return JSONResponse(
        {
            "status": "ready" if state.ready else "not ready",
            "database": state.database,
            "schema_revision": state.schema_revision,
            "expected_revision": state.expected_revision,
        },
        status_code=200 if state.ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
