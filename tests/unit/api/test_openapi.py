"""Schemathesis against the API's own OpenAPI document: no request makes a server error.

The app has its actions (acknowledging, silencing: open to every request, in a file of
this test's own), so the writes are fuzzed too.
"""

from __future__ import annotations

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings


def test_no_request_to_any_endpoint_makes_a_server_error(actions_app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", actions_app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]  # an invalid schema raises
    assert len(operations) >= 13
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, suppress_health_check=list(HealthCheck), deadline=None)
        def no_server_error(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(checks=[schemathesis.checks.not_a_server_error])

        no_server_error()
