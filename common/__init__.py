"""Shared by the API and the workers: configuration, models, database and Redis access."""
