"""The HTTP API: translates requests into service calls and errors into problem+json."""
