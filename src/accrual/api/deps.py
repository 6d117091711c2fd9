"""What every route gets: the services' dependencies, the caller, and idempotent writes.

This module deliberately has no `from __future__ import annotations`: FastAPI evaluates the
annotations of the dependency functions built in closures below, and those name local
variables that a postponed (string) annotation could not resolve.
"""

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from accrual.api import problems
from accrual.domain import access
from accrual.domain.clock import Clock
from accrual.domain.errors import AccrualError, Forbidden, UnsupportedFormat
from accrual.services import api_keys, idempotency
from accrual.services.api_keys import InvalidApiKey, Principal
from accrual.services.due_work import DueWorkRegistry
from accrual.store.database import Database, TransactionSource


@dataclasses.dataclass(frozen=True)
class AppServices:
    """What the app was built with: the database, the clock it reads, the due-work providers."""

    db: Database
    clock: Clock
    registry: DueWorkRegistry


def app_services(request: Request) -> AppServices:
    services: AppServices = request.app.state.services
    return services


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer acr_...`")


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidApiKey("send an API key as `Authorization: Bearer <key>`")
    return api_keys.authenticate(app_services(request).db, secret=credentials.credentials)


class MissingScope(Forbidden):
    title = "Missing scope"


def require(*scopes: access.Scope) -> Callable[..., Principal]:
    """A dependency admitting keys that hold any of `scopes` (or a scope that implies one)."""

    def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        if not any(access.grants(caller.scopes, s) for s in scopes):
            needed = " or ".join(s.value for s in scopes)
            raise MissingScope(f"this API key lacks the {needed} scope this request needs")
        return caller

    return check


@dataclasses.dataclass
class WriteContext:
    """A write request: the caller, the instant, and how to run it idempotently."""

    services: AppServices
    principal: Principal
    now: dt.datetime
    method: str
    path: str
    body: bytes
    idempotency_key: str | None

    @property
    def db(self) -> Database:
        return self.services.db

    def run(
        self,
        handler: Callable[[TransactionSource], BaseModel | bytes],
        *,
        status_code: int = 200,
        atomic: bool = True,
    ) -> Response:
        """Run `handler` (at most once per Idempotency-Key) and answer with its model (or its JSON
        bytes) as JSON."""

        def respond(source: TransactionSource) -> idempotency.StoredResponse:
            result = handler(source)
            return idempotency.StoredResponse(
                request_method=self.method,
                request_path=self.path,
                request_hash=b"",
                status=status_code,
                headers={"content-type": "application/json"},
                body=result if isinstance(result, bytes) else result.model_dump_json().encode(),
            )

        if self.idempotency_key is None:
            stored = respond(self.db)
            return Response(stored.body, status_code=stored.status, media_type="application/json")
        request = idempotency.IdempotentRequest(
            tenant_id=self.principal.tenant_id,
            key=self.idempotency_key,
            method=self.method,
            path=self.path,
            body=self.body,
        )
        stored, replayed = idempotency.run_idempotently(
            self.db, request, handler=respond, render_error=_render_error, now=self.now, atomic=atomic
        )
        headers = dict(stored.headers)
        if replayed:
            headers["idempotent-replayed"] = "true"
        return Response(stored.body, status_code=stored.status, headers=headers)


def _render_error(err: AccrualError) -> idempotency.StoredResponse:
    status, body = problems.problem_for(err)
    return idempotency.StoredResponse(
        request_method="",
        request_path="",
        request_hash=b"",
        status=status,
        headers={"content-type": problems.PROBLEM_JSON},
        body=json.dumps(body).encode(),
    )


def writer(*scopes: access.Scope) -> Callable[..., Any]:
    """A dependency for a write route: authenticates, checks scopes, reads the body for idempotency."""
    check = require(*scopes)

    async def build(
        request: Request,
        caller: Annotated[Principal, Depends(check)],
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                description="Retry-safe key: the same key and body replay the first response.",
            ),
        ] = None,
    ) -> WriteContext:
        services = app_services(request)
        if idempotency_key is not None:
            idempotency.validate_key(idempotency_key)
        body = await request.body()
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body and not (media_type == "application/json" or media_type.endswith("+json")):
            raise UnsupportedFormat(
                "send the body as JSON with Content-Type: application/json "
                f"(got {media_type or 'no Content-Type'})",
                field="Content-Type",
            )
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return WriteContext(
            services=services,
            principal=caller,
            now=services.clock.now(),
            method=request.method,
            path=path,
            body=body,
            idempotency_key=idempotency_key,
        )

    return build


@dataclasses.dataclass(frozen=True)
class ReadContext:
    services: AppServices
    principal: Principal

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def now(self) -> dt.datetime:
        return self.services.clock.now()


def reader(*scopes: access.Scope) -> Callable[..., ReadContext]:
    check = require(*scopes)

    def build(request: Request, caller: Annotated[Principal, Depends(check)]) -> ReadContext:
        return ReadContext(services=app_services(request), principal=caller)

    return build


__all__ = ["AccrualError", "AppServices", "ReadContext", "WriteContext", "reader", "require", "writer"]
