"""The catalog: meters, products, plans and their versions, coupons, tax rates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from accrual.api import catalog_schemas as s
from accrual.api.deps import ReadContext, WriteContext, reader, writer
from accrual.api.schemas import ListOf, list_of
from accrual.domain.access import Scope
from accrual.services import catalog
from accrual.store.database import TransactionSource
from accrual.store.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", tags=["catalog"])

Reader = Annotated[ReadContext, Depends(reader(Scope.READ))]
Writer = Annotated[WriteContext, Depends(writer(Scope.WRITE))]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _spec(body: BaseModel) -> dict[str, Any]:
    """The body as the domain reads it: only what the caller sent, aliases as sent."""
    return body.model_dump(exclude_unset=True, by_alias=True, mode="python")


# --- meters --------------------------------------------------------------------------------


@router.post("/meters", status_code=201, response_model=s.MeterOut, tags=["meters"], summary="Create a meter")
def create_meter(body: s.MeterCreate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.MeterOut.of(
            catalog.create_meter(
                db,
                tenant_id=ctx.principal.tenant_id,
                spec=_spec(body),
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.get("/meters", response_model=ListOf[s.MeterOut], tags=["meters"], summary="List meters by code")
def list_meters(
    ctx: Reader, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT, include_archived: bool = False
) -> ListOf[s.MeterOut]:
    page = catalog.list_meters(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
    )
    return list_of(s.MeterOut, page, s.MeterOut.of)


@router.get("/meters/{code}", response_model=s.MeterOut, tags=["meters"], summary="One meter")
def get_meter(code: str, ctx: Reader) -> s.MeterOut:
    return s.MeterOut.of(catalog.get_meter(ctx.db, tenant_id=ctx.principal.tenant_id, code=code))


@router.patch(
    "/meters/{code}",
    response_model=s.MeterOut,
    tags=["meters"],
    summary="Rename a meter, or change what it counts while no published plan version uses it",
)
def update_meter(code: str, body: s.MeterUpdate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.MeterOut.of(
            catalog.update_meter(
                db,
                tenant_id=ctx.principal.tenant_id,
                code=code,
                changes=_spec(body),
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.post("/meters/{code}/archive", response_model=s.MeterOut, tags=["meters"], summary="Archive a meter")
def archive_meter(code: str, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.MeterOut.of(
            catalog.archive_meter(
                db, tenant_id=ctx.principal.tenant_id, code=code, actor=ctx.principal.actor, now=ctx.now
            )
        )
    )


# --- products ------------------------------------------------------------------------------


@router.post(
    "/products", status_code=201, response_model=s.ProductOut, tags=["products"], summary="Create a product"
)
def create_product(body: s.ProductCreate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.ProductOut.of(
            catalog.create_product(
                db,
                tenant_id=ctx.principal.tenant_id,
                spec=_spec(body),
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.get(
    "/products", response_model=ListOf[s.ProductOut], tags=["products"], summary="List products by code"
)
def list_products(
    ctx: Reader, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT, include_archived: bool = False
) -> ListOf[s.ProductOut]:
    page = catalog.list_products(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
    )
    return list_of(s.ProductOut, page, s.ProductOut.of)


@router.get("/products/{code}", response_model=s.ProductOut, tags=["products"], summary="One product")
def get_product(code: str, ctx: Reader) -> s.ProductOut:
    return s.ProductOut.of(catalog.get_product(ctx.db, tenant_id=ctx.principal.tenant_id, code=code))


@router.patch("/products/{code}", response_model=s.ProductOut, tags=["products"], summary="Rename a product")
def update_product(code: str, body: s.NameUpdate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.ProductOut.of(
            catalog.update_product(
                db,
                tenant_id=ctx.principal.tenant_id,
                code=code,
                name=body.name,
                description=body.description,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.post(
    "/products/{code}/archive", response_model=s.ProductOut, tags=["products"], summary="Archive a product"
)
def archive_product(code: str, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.ProductOut.of(
            catalog.archive_product(
                db, tenant_id=ctx.principal.tenant_id, code=code, actor=ctx.principal.actor, now=ctx.now
            )
        )
    )


# --- plans ---------------------------------------------------------------------------------


@router.post(
    "/plans",
    status_code=201,
    response_model=s.PlanOut,
    tags=["plans"],
    summary="Create a plan with version 1 as a draft (or published at once with publish: true)",
)
def create_plan(body: s.PlanCreate, ctx: Writer) -> Response:
    spec = _spec(body)
    publish = bool(spec.pop("publish", False))
    return ctx.run(
        lambda db: s.PlanOut.of(
            catalog.create_plan(
                db,
                tenant_id=ctx.principal.tenant_id,
                spec=spec,
                publish=publish,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.get("/plans", response_model=ListOf[s.PlanOut], tags=["plans"], summary="List plans by code")
def list_plans(
    ctx: Reader, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT, include_archived: bool = False
) -> ListOf[s.PlanOut]:
    page = catalog.list_plans(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
    )
    return list_of(s.PlanOut, page, s.PlanOut.of)


@router.get(
    "/plans/{code}",
    response_model=s.PlanOut,
    tags=["plans"],
    summary="One plan, its current and open versions",
)
def get_plan(code: str, ctx: Reader) -> s.PlanOut:
    return s.PlanOut.of(catalog.get_plan(ctx.db, tenant_id=ctx.principal.tenant_id, code=code))


@router.patch("/plans/{code}", response_model=s.PlanOut, tags=["plans"], summary="Rename a plan")
def update_plan(code: str, body: s.PlanUpdate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.PlanOut.of(
            catalog.update_plan(
                db,
                tenant_id=ctx.principal.tenant_id,
                code=code,
                name=body.name,
                description=body.description,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.post("/plans/{code}/archive", response_model=s.PlanOut, tags=["plans"], summary="Archive a plan")
def archive_plan(code: str, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.PlanOut.of(
            catalog.archive_plan(
                db, tenant_id=ctx.principal.tenant_id, code=code, actor=ctx.principal.actor, now=ctx.now
            )
        )
    )


@router.get(
    "/plans/{code}/versions",
    response_model=list[s.PlanVersionOut],
    tags=["plans"],
    summary="Every version of a plan",
)
def list_plan_versions(code: str, ctx: Reader) -> list[s.PlanVersionOut]:
    plan = catalog.get_plan(ctx.db, tenant_id=ctx.principal.tenant_id, code=code)
    return [s.PlanVersionOut.of(v) for v in plan.versions]


@router.get(
    "/plans/{code}/versions/{version}",
    response_model=s.PlanVersionOut,
    tags=["plans"],
    summary="One plan version",
)
def get_plan_version(code: str, version: int, ctx: Reader) -> s.PlanVersionOut:
    return s.PlanVersionOut.of(
        catalog.get_plan_version(ctx.db, tenant_id=ctx.principal.tenant_id, code=code, version=version)
    )


@router.post(
    "/plans/{code}/versions",
    status_code=201,
    response_model=s.PlanVersionOut,
    tags=["plans"],
    summary="Open a new draft version (a copy of the newest, or the given terms)",
)
def create_draft(code: str, body: s.DraftCreate, ctx: Writer) -> Response:
    terms = _spec(body.terms) if body.terms is not None else None
    return ctx.run(
        lambda db: s.PlanVersionOut.of(
            catalog.create_draft(
                db,
                tenant_id=ctx.principal.tenant_id,
                code=code,
                terms=terms,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.put(
    "/plans/{code}/draft",
    response_model=s.PlanVersionOut,
    tags=["plans"],
    summary="Replace the draft version's terms",
)
def update_draft(code: str, body: s.PlanTerms, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.PlanVersionOut.of(
            catalog.update_draft(
                db,
                tenant_id=ctx.principal.tenant_id,
                code=code,
                terms=_spec(body),
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


def _version_action(action: Any, code: str, version: int, ctx: WriteContext, **extra: Any) -> Response:
    def handler(db: TransactionSource) -> s.PlanVersionOut:
        view = action(
            db,
            tenant_id=ctx.principal.tenant_id,
            code=code,
            version=version,
            actor=ctx.principal.actor,
            now=ctx.now,
            **extra,
        )
        return s.PlanVersionOut.of(view)

    return ctx.run(handler)


@router.post(
    "/plans/{code}/versions/{version}/publish",
    response_model=s.PlanVersionOut,
    tags=["plans"],
    summary="Publish a draft: frozen forever (under maker-checker: submitted for approval)",
)
def publish_version(code: str, version: int, ctx: Writer) -> Response:
    return _version_action(catalog.publish_version, code, version, ctx)


@router.post(
    "/plans/{code}/versions/{version}/approve",
    response_model=s.PlanVersionOut,
    tags=["plans"],
    summary="Approve a version awaiting approval (not by the person who submitted it)",
)
def approve_version(code: str, version: int, ctx: Writer) -> Response:
    return _version_action(catalog.approve_version, code, version, ctx)


@router.post(
    "/plans/{code}/versions/{version}/reject",
    response_model=s.PlanVersionOut,
    tags=["plans"],
    summary="Send a version awaiting approval back to draft, with a reason",
)
def reject_version(code: str, version: int, body: s.Rejection, ctx: Writer) -> Response:
    return _version_action(catalog.reject_version, code, version, ctx, reason=body.reason)


# --- coupons and tax rates -----------------------------------------------------------------


@router.post(
    "/coupons", status_code=201, response_model=s.CouponOut, tags=["coupons"], summary="Create a coupon"
)
def create_coupon(body: s.CouponCreate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.CouponOut.of(
            catalog.create_coupon(
                db,
                tenant_id=ctx.principal.tenant_id,
                spec=_spec(body),
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.get("/coupons", response_model=ListOf[s.CouponOut], tags=["coupons"], summary="List coupons by code")
def list_coupons(
    ctx: Reader, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT, include_archived: bool = False
) -> ListOf[s.CouponOut]:
    page = catalog.list_coupons(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
    )
    return list_of(s.CouponOut, page, s.CouponOut.of)


@router.get("/coupons/{code}", response_model=s.CouponOut, tags=["coupons"], summary="One coupon")
def get_coupon(code: str, ctx: Reader) -> s.CouponOut:
    return s.CouponOut.of(catalog.get_coupon(ctx.db, tenant_id=ctx.principal.tenant_id, code=code))


@router.patch("/coupons/{code}", response_model=s.CouponOut, tags=["coupons"], summary="Rename a coupon")
def rename_coupon(code: str, body: s.NameUpdate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.CouponOut.of(
            catalog.rename_coupon(
                db,
                tenant_id=ctx.principal.tenant_id,
                code=code,
                name=body.name or code,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.post(
    "/coupons/{code}/archive", response_model=s.CouponOut, tags=["coupons"], summary="Archive a coupon"
)
def archive_coupon(code: str, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.CouponOut.of(
            catalog.archive_coupon(
                db, tenant_id=ctx.principal.tenant_id, code=code, actor=ctx.principal.actor, now=ctx.now
            )
        )
    )


@router.post(
    "/tax_rates",
    status_code=201,
    response_model=s.TaxRateOut,
    tags=["tax rates"],
    summary="Create a tax rate",
)
def create_tax_rate(body: s.TaxRateCreate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.TaxRateOut.of(
            catalog.create_tax_rate(
                db,
                tenant_id=ctx.principal.tenant_id,
                spec=_spec(body),
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.get(
    "/tax_rates", response_model=ListOf[s.TaxRateOut], tags=["tax rates"], summary="List tax rates by code"
)
def list_tax_rates(
    ctx: Reader, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT, include_archived: bool = False
) -> ListOf[s.TaxRateOut]:
    page = catalog.list_tax_rates(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
    )
    return list_of(s.TaxRateOut, page, s.TaxRateOut.of)


@router.get("/tax_rates/{code}", response_model=s.TaxRateOut, tags=["tax rates"], summary="One tax rate")
def get_tax_rate(code: str, ctx: Reader) -> s.TaxRateOut:
    return s.TaxRateOut.of(catalog.get_tax_rate(ctx.db, tenant_id=ctx.principal.tenant_id, code=code))


@router.patch(
    "/tax_rates/{code}", response_model=s.TaxRateOut, tags=["tax rates"], summary="Rename a tax rate"
)
def rename_tax_rate(code: str, body: s.NameUpdate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.TaxRateOut.of(
            catalog.rename_tax_rate(
                db,
                tenant_id=ctx.principal.tenant_id,
                code=code,
                name=body.name or code,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.post(
    "/tax_rates/{code}/archive", response_model=s.TaxRateOut, tags=["tax rates"], summary="Archive a tax rate"
)
def archive_tax_rate(code: str, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.TaxRateOut.of(
            catalog.archive_tax_rate(
                db, tenant_id=ctx.principal.tenant_id, code=code, actor=ctx.principal.actor, now=ctx.now
            )
        )
    )


# --- the whole catalog at once -------------------------------------------------------------


@router.post(
    "/catalog/apply",
    response_model=s.CatalogApplied,
    tags=["catalog"],
    summary="Apply a catalog document (a scenario file's catalog section): idempotent, all or nothing",
)
def apply_catalog(body: s.CatalogDocument, ctx: Writer) -> Response:
    def handler(db: TransactionSource) -> s.CatalogApplied:
        results = catalog.apply_catalog(
            db,
            tenant_id=ctx.principal.tenant_id,
            document=_spec(body),
            actor=ctx.principal.actor,
            now=ctx.now,
        )
        return s.CatalogApplied(
            results=[s.AppliedOut(kind=r.kind, code=r.code, outcome=r.outcome) for r in results],
            changed=any(r.outcome != "unchanged" for r in results),
        )

    return ctx.run(handler)
