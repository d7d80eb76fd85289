"""One blueprint per resource."""

from api.routes.health import blp as health

BLUEPRINTS = [health]
