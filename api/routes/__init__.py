"""One blueprint per resource."""

from api.routes.health import blp as health
from api.routes.keys import blp as keys
from api.routes.servers import blp as servers

BLUEPRINTS = [health, keys, servers]
