"""Billing: invoices from billing points, drafts, finalization, corrections and payments."""
