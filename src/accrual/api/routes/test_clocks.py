"""Test clocks: simulated time for rehearsing billing."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from accrual.api.deps import ReadContext, WriteContext, reader, writer
from accrual.api.schemas import (
    AdvanceStepOut,
    ListOf,
    TestClockAdvance,
    TestClockAdvanced,
    TestClockCreate,
    TestClockOut,
    list_of,
)
from accrual.domain.access import Scope
from accrual.services import test_clocks
from accrual.store.database import Database, TransactionSource
from accrual.store.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1/test_clocks", tags=["test clocks"])


@router.post(
    "", status_code=201, response_model=TestClockOut, summary="Create a test clock frozen at an instant"
)
def create_test_clock(
    body: TestClockCreate, ctx: Annotated[WriteContext, Depends(writer(Scope.WRITE))]
) -> Response:
    return ctx.run(
        lambda db: TestClockOut.of(
            test_clocks.create_test_clock(
                db,
                tenant_id=ctx.principal.tenant_id,
                name=body.name,
                frozen_time=body.frozen_time,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.get("", response_model=ListOf[TestClockOut], summary="List test clocks, newest first")
def list_test_clocks(
    ctx: Annotated[ReadContext, Depends(reader(Scope.READ))],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ListOf[TestClockOut]:
    page = test_clocks.list_test_clocks(ctx.db, tenant_id=ctx.principal.tenant_id, cursor=cursor, limit=limit)
    return list_of(TestClockOut, page, TestClockOut.of)


@router.get("/{test_clock_id}", response_model=TestClockOut, summary="One test clock")
def get_test_clock(
    test_clock_id: uuid.UUID, ctx: Annotated[ReadContext, Depends(reader(Scope.READ))]
) -> TestClockOut:
    return TestClockOut.of(
        test_clocks.get_test_clock(ctx.db, tenant_id=ctx.principal.tenant_id, test_clock_id=test_clock_id)
    )


@router.post(
    "/{test_clock_id}/advance",
    response_model=TestClockAdvanced,
    summary="Advance a test clock, running all work that falls due, in time order",
)
def advance_test_clock(
    test_clock_id: uuid.UUID,
    body: TestClockAdvance,
    ctx: Annotated[WriteContext, Depends(writer(Scope.WRITE))],
) -> Response:
    def handler(db: TransactionSource) -> TestClockAdvanced:
        if not isinstance(db, Database):  # an advance spans transactions: it is run non-atomically
            raise TypeError("advancing a test clock needs the database, not a transaction")
        advance = test_clocks.advance_test_clock(
            db,
            tenant_id=ctx.principal.tenant_id,
            test_clock_id=test_clock_id,
            to=body.frozen_time,
            registry=ctx.services.registry,
            actor=ctx.principal.actor,
            now=ctx.now,
        )
        return TestClockAdvanced(
            test_clock=TestClockOut.of(advance.clock),
            steps=[AdvanceStepOut(provider=s.provider, at=s.at, items=s.items) for s in advance.steps],
        )

    # Advancing to an instant is itself idempotent (a second advance to it finds nothing due),
    # so it may span many transactions and store its response once done.
    return ctx.run(handler, atomic=False)
