"""Block Kit builders: small pure functions from domain values to view and message dicts."""
