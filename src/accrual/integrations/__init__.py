"""The outside world behind small protocols: the system clock, payment providers, webhook transport."""
