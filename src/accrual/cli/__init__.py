"""The `accrual` command line."""
