"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error the API returns has `type`, `title`, `status` and `detail`. Validation errors add
`errors`: one item per failing input, with a JSON `pointer` into the request body (`#/name`)
or the `parameter` (query, path or header) that failed; `pointer` or `parameter` of the first
one is also given at the top level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from accrual.domain.errors import AccrualError, ErrorKind

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:accrual:problem:"

STATUS_BY_KIND = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.UNSUPPORTED_FORMAT: 415,
}

log = structlog.get_logger("accrual.api")


def _escape_pointer_token(token: object) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def field_location(field: str) -> dict[str, str]:
    """`/a/b` is a pointer into the body; anything else names a parameter or header."""
    if field.startswith("/"):
        return {"pointer": "#" + field}
    return {"parameter": field}


def problem(
    *,
    status: int,
    title: str,
    detail: str,
    type_slug: str,
    errors: Sequence[dict[str, str]] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + type_slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = list(errors)
        for key in ("pointer", "parameter"):
            if key in errors[0]:
                body[key] = errors[0][key]
    if extra:
        body.update(extra)
    return body


def problem_for(err: AccrualError) -> tuple[int, dict[str, Any]]:
    """The status and problem body for an `AccrualError`."""
    status = STATUS_BY_KIND[err.kind]
    errors = [{"detail": err.detail, **field_location(err.field)}] if err.field else []
    return status, problem(
        status=status,
        title=err.title,
        detail=err.detail,
        type_slug=err.type_slug,
        errors=errors,
        extra=err.context or None,
    )


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    out = []
    for error in errors:
        loc = list(error.get("loc", ()))
        where = loc[0] if loc else "body"
        item: dict[str, str] = {"detail": str(error.get("msg", "invalid"))}
        if where == "body":
            tokens = [t for t in loc[1:] if error.get("type") != "json_invalid"]
            item["pointer"] = "#" + "".join("/" + _escape_pointer_token(t) for t in tokens)
        else:
            item["parameter"] = str(loc[1]) if len(loc) > 1 else str(where)
        out.append(item)
    return out


def install(app: FastAPI) -> None:
    """Make every error the app can raise answer as problem+json."""

    @app.exception_handler(AccrualError)
    async def accrual_error(_: Request, err: AccrualError) -> JSONResponse:
        status, body = problem_for(err)
        headers = {"WWW-Authenticate": 'Bearer realm="accrual"'} if status == 401 else None
        return problem_response(status, body, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(err.errors())
        where = errors[0].get("pointer") or errors[0].get("parameter") if errors else None
        count = len(errors)
        detail = f"{count} input{'s' if count != 1 else ''} failed validation" + (
            f"; first at {where}: {errors[0]['detail']}" if where else ""
        )
        return problem_response(
            422,
            problem(
                status=422, title="Invalid input", detail=detail, type_slug="invalid-input", errors=errors
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(err.status_code, "HTTP error")
        slug = title.lower().replace(" ", "-")
        return problem_response(
            err.status_code,
            problem(status=err.status_code, title=title, detail=str(err.detail), type_slug=slug),
            dict(err.headers) if err.headers else None,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path, error=type(err).__name__)
        return problem_response(
            500,
            problem(
                status=500,
                title="Internal error",
                detail="the server failed to complete the request; nothing was changed; it is safe to retry",
                type_slug="internal-error",
            ),
        )
