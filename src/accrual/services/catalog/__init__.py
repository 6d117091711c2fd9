"""The catalog: products, meters, plans with immutable published versions, coupons, tax rates.

Every function validates its input with the domain's parsers (errors name the field with a
JSON pointer), checks references (meters, tax rates, products, plans) in the same
transaction, and records each change in the audit log and the outbox.
"""

from accrual.services.catalog.apply import CATALOG_SECTIONS, Applied, apply_catalog
from accrual.services.catalog.common import (
    ArchivedObject,
    CatalogObjectNotFound,
    CouponView,
    MeterView,
    PlanVersionNotFound,
    PlanView,
    ProductView,
    TaxRateView,
    TermsDiffer,
    UnknownReference,
    VersionView,
)
from accrual.services.catalog.coupons import (
    archive_coupon,
    create_coupon,
    get_coupon,
    list_coupons,
    rename_coupon,
)
from accrual.services.catalog.meters import archive_meter, create_meter, get_meter, list_meters, update_meter
from accrual.services.catalog.plans import (
    approve_version,
    archive_plan,
    create_draft,
    create_plan,
    get_plan,
    get_plan_version,
    list_plans,
    publish_version,
    reject_version,
    update_draft,
    update_plan,
)
from accrual.services.catalog.products import (
    archive_product,
    create_product,
    get_product,
    list_products,
    update_product,
)
from accrual.services.catalog.tax_rates import (
    archive_tax_rate,
    create_tax_rate,
    get_tax_rate,
    list_tax_rates,
    rename_tax_rate,
)

__all__ = [
    "CATALOG_SECTIONS",
    "Applied",
    "ArchivedObject",
    "CatalogObjectNotFound",
    "CouponView",
    "MeterView",
    "PlanVersionNotFound",
    "PlanView",
    "ProductView",
    "TaxRateView",
    "TermsDiffer",
    "UnknownReference",
    "VersionView",
    "apply_catalog",
    "approve_version",
    "archive_coupon",
    "archive_meter",
    "archive_plan",
    "archive_product",
    "archive_tax_rate",
    "create_coupon",
    "create_draft",
    "create_meter",
    "create_plan",
    "create_product",
    "create_tax_rate",
    "get_coupon",
    "get_meter",
    "get_plan",
    "get_plan_version",
    "get_product",
    "get_tax_rate",
    "list_coupons",
    "list_meters",
    "list_plans",
    "list_products",
    "list_tax_rates",
    "publish_version",
    "reject_version",
    "rename_coupon",
    "rename_tax_rate",
    "update_draft",
    "update_meter",
    "update_plan",
    "update_product",
]
