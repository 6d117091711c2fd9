"""Usage metering: idempotent intake, quarantine, exact aggregation over rollups and a fresh tail."""
