"""Use cases. Each runs in one unit of work that writes its audit record and outbox events."""
