"""The OpenAPI 3.1 document of the HTTP API.

The paths are written out here (no framework generates them, and no interactive docs page is
served: it would pull scripts from a CDN); every schema under ``components`` is generated from
the pydantic models the answers are built with (:mod:`aura_otel.shapes` for the legacy and
job-list shapes, :mod:`aura_otel.schema` for the v1 collection), so the document and the
answers cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ..figures import JobStatus
from ..schema import Collection
from ..shapes import RESPONSE_MODELS
from .joblist import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


_JOB_ID = {
    "name": "jobId",
    "in": "path",
    "required": True,
    "description": (
        "A safe single path segment: no '/', '\\', '..', control, format or "
        "separator characters; <= 128 characters and <= 255 UTF-8 bytes."
    ),
    "schema": {"type": "string", "maxLength": 128},
}
_ERRORS = {
    "400": _problem("Missing or unsafe job id"),
    "401": _problem("Access token required (only when the server has one configured)"),
    "404": _problem("No telemetry for this job (the problem has a `guidance` field)"),
    "422": _problem("The telemetry file is larger than the server parses (--max-file-bytes)"),
    "500": _problem("Unreadable telemetry file or unexpected error (no internals disclosed)"),
    "503": _problem("The job store (PostgreSQL) is unavailable; retry after Retry-After seconds"),
}


_OPERATION: dict[str, Any] = {
    "type": "object",
    "required": ["jobId", "position", "fields", "pricing", "metadata", "calls", "spanFound"],
    "properties": {
        "jobId": {"type": "string"},
        "position": {"type": "integer"},
        "label": {"type": "string"},
        "status": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
        "pricing": {"type": "array", "items": {"type": "string"}},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "error": {"type": ["object", "null"]},
        "calls": {"type": "array", "items": {"type": "object"}},
        "spanFound": {"type": "boolean"},
    },
}
_INSIGHTS: dict[str, Any] = {
    "type": "object",
    "required": ["period", "filters", "totals", "charts", "anomalies"],
    "properties": {
        "period": {"type": "object"},
        "filters": {"type": "object"},
        "totals": {"type": "object"},
        "charts": {"type": "object"},
        "anomalies": {"type": "array", "items": {"type": "object"}},
    },
}


def _components() -> dict[str, Any]:
    """Every answer's schema, from its model; shared parts become named components."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Collection, "serialization")]
    models += [(model, "serialization") for model in RESPONSE_MODELS]
    top, defs = models_json_schema(models, ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    for (model, _), schema in top.items():
        schemas.setdefault(model.__name__, schema)
    return schemas


def openapi_document() -> dict[str, Any]:
    job = [_JOB_ID]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aura-otel",
            "version": "1.0",
            "description": "Read-only access to RunTelemetry v1 files and the legacy cost views.",
        },
        "paths": {
            "/api/telemetry/schema": {
                "get": {
                    "summary": "Enumerations and JSON Schema of RunTelemetry v1",
                    "operationId": "getTelemetrySchema",
                    "responses": {
                        "200": _json(_ref("TelemetrySchema"), "The v1 schema description")
                    },
                }
            },
            "/api/telemetry/{jobId}": {
                "get": {
                    "summary": "A job's v1 collection; absent optional fields are explicit nulls",
                    "operationId": "getTelemetry",
                    "parameters": job,
                    "responses": {"200": _json(_ref("Collection"), "The collection"), **_ERRORS},
                }
            },
            "/api/telemetry/{jobId}/diagnostics": {
                "get": {
                    "summary": "Failures and warnings of a job",
                    "operationId": "getDiagnostics",
                    "parameters": job,
                    "responses": {
                        "200": _json(_ref("Diagnostics"), "The diagnostics summary"),
                        **_ERRORS,
                    },
                }
            },
            "/api/cost-tracking/run-summary/{jobId}": {
                "get": {
                    "summary": "The legacy RunCostReport of a job",
                    "operationId": "getRunSummary",
                    "parameters": job,
                    "responses": {"200": _json(_ref("RunCostReport"), "The report"), **_ERRORS},
                }
            },
            "/api/telemetry/{jobId}/ops/{n}": {
                "get": {
                    "summary": "One operation in full: record, pricing, exception, folded calls",
                    "operationId": "getOperation",
                    "parameters": [
                        *job,
                        {
                            "name": "n",
                            "in": "path",
                            "required": True,
                            "description": "The record's position in the file, from 0",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {
                        "200": _json(_OPERATION, "The operation (docs/insights.md)"),
                        **_ERRORS,
                    },
                }
            },
            "/api/insights": {
                "get": {
                    "summary": "Fleet figures, charts and anomalies over a period and filters",
                    "operationId": "getInsights",
                    "parameters": [
                        {"name": name, "in": "query", "schema": {"type": "string"}}
                        for name in (
                            "since",
                            "until",
                            "project",
                            "provider",
                            "model",
                            "stage",
                            "status",
                        )
                    ],
                    "responses": {
                        "200": _json(_INSIGHTS, "The fleet view's figures (docs/insights.md)"),
                        "400": _problem("A bad date, or a period over 366 days"),
                        "401": _ERRORS["401"],
                    },
                }
            },
            "/api/jobs": {
                "get": {
                    "summary": "Recent jobs, newest telemetry file first",
                    "operationId": "listJobs",
                    "parameters": [
                        {
                            "name": "page",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "default": 1},
                        },
                        {
                            "name": "pageSize",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_PAGE_SIZE,
                                "default": DEFAULT_PAGE_SIZE,
                            },
                        },
                        {
                            "name": "status",
                            "in": "query",
                            "description": "Only jobs with this status",
                            "schema": {"type": "string", "enum": [str(s) for s in JobStatus]},
                        },
                        {
                            "name": "from",
                            "in": "query",
                            "description": "Only jobs updated at or after this ISO 8601 date "
                            "or date-time (UTC unless it has an offset)",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "to",
                            "in": "query",
                            "description": "Only jobs updated before this date-time (a bare "
                            "date includes that whole day)",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "q",
                            "in": "query",
                            "description": "Only jobs whose id contains this text "
                            "(case-insensitive)",
                            "schema": {"type": "string", "maxLength": 200},
                        },
                    ],
                    "responses": {
                        "200": _json(_ref("JobPage"), "One page of jobs"),
                        "400": _ERRORS["400"],
                        "401": _ERRORS["401"],
                        "503": _ERRORS["503"],
                    },
                }
            },
        },
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when an access token is configured",
                }
            },
        },
    }
