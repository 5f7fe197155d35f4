"""Schemathesis over the OpenAPI schema against a live server on 127.0.0.1: no input gives a 5xx,
and every answer has a documented status, content type and body.

Every operation is fuzzed with schema-valid and schema-violating data (bounded examples), as a
hospital system (API key) and as a compliance officer (session + CSRF token); request ids are
random or real. Every 4xx must be in the one error shape.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.throttling import ScopedRateThrottle
from schemathesis import GenerationMode, checks
from schemathesis.checks import Failure, FailureGroup

from compliance import forget_requests as services
from core.principals import SYSTEM

EXAMPLES = 6
#: What the server answers: never 5xx; statuses, content types and bodies as documented.
RESPONSE_CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
                   checks.response_schema_conformance]
CSRF_SECRET = "oblivioFuzzCsrfSecret0123456789a"  # 32 characters, as Django's CSRF cookie


def _fuzz(strategy: Any, *, base_url: str, headers: dict, cookies: dict, failures: list[str]) -> int:
    """Send up to ``EXAMPLES`` generated cases; collect what the response checks find."""
    calls = 0

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def probe(case: schemathesis.Case) -> None:
        nonlocal calls
        calls += 1
        try:
            response = case.call_and_validate(base_url=base_url, headers=headers, cookies=cookies,
                                              checks=RESPONSE_CHECKS)
        except (FailureGroup, Failure) as failure:
            failures.append(f"{failure}")
            return
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}

    probe()
    return calls


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_no_input_makes_the_api_fail(live_server, key_a, officer, make_request, patient_subject,
                                     monkeypatch) -> None:
    for scope in ("read", "write", "lookup"):
        monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, scope, "100000/min")
    request = make_request(patient_subject(0))
    services.forget_request_review(request_id=request.pk, actor=SYSTEM)
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    session = officer.client().cookies["sessionid"].value
    callers = [({"Authorization": f"Bearer {key_a.token}"}, {}),
               ({"X-CSRFToken": CSRF_SECRET}, {"sessionid": session, "csrftoken": CSRF_SECRET})]
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        ids = [{}, {"path_parameters": {"id": str(request.pk)}}] if "{id}" in operation.path else [{}]
        for mode, path_parameters, (headers, cookies) in itertools.product(GenerationMode, ids, callers):
            try:
                calls += _fuzz(operation.as_strategy(generation_mode=mode, **path_parameters),
                               base_url=live_server.url, headers=headers, cookies=cookies, failures=failures)
            except Unsatisfiable:  # an operation without inputs has nothing to send wrong
                assert mode == GenerationMode.NEGATIVE, f"{operation.method} {operation.path}"
    assert calls > 150
    assert not failures, "\n".join(failures)
