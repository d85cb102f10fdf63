"""One module per API section; each exposes a list of route handlers."""
