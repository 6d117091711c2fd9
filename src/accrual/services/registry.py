"""The due-work providers Accrual ships, in the order their work runs at the same instant."""

from __future__ import annotations

from accrual.services.billing.due import BillingPointsDue, DraftsDue
from accrual.services.due_work import DueWorkRegistry
from accrual.services.subscriptions import SubscriptionDueWork


def default_registry() -> DueWorkRegistry:
    """Subscriptions first (starts, trial ends, changes, renewals); billing follows what they make
    due, then drafts whose grace period ends."""
    return DueWorkRegistry((SubscriptionDueWork(), BillingPointsDue(), DraftsDue()))
