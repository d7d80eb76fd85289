"""The HTTP API: authenticates, validates and enqueues. It never imports `workers`."""
