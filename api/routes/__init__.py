"""One blueprint per resource."""

from api.routes.analytics import blp as analytics
from api.routes.calls import blp as calls
from api.routes.health import blp as health
from api.routes.keys import blp as keys
from api.routes.metrics import blp as metrics
from api.routes.permissions import blp as permissions
from api.routes.server_actions import blp as server_actions
from api.routes.servers import blp as servers
from api.routes.tools import blp as tools

BLUEPRINTS = [health, keys, servers, tools, permissions, calls, server_actions, analytics, metrics]
