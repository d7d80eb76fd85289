"""Marshmallow schemas, one module per resource; they also build the OpenAPI document."""
