"""Schemas shared by several resources."""

from marshmallow import Schema, fields


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict()


class GatewayErrorSchema(Schema):
    """The one error shape (named apart from flask-smorest's own "Error" in OpenAPI)."""

    error = fields.Nested(ErrorBody, required=True)
