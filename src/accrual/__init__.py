"""Accrual: the source of truth for monetization state."""

__version__ = "0.1.0"
