"""The execution plane: pinned Celery worker processes holding live MCP sessions."""
