"""Fuzzing the live server from its own /openapi.json: no 5xx, and every answer matches the schema.

Drives schemathesis through its Python API (schema -> per-operation hypothesis strategies) rather
than its pytest plugin, whose parametrize does not work with this pytest version.
"""

from __future__ import annotations

from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.backend_process import BackendProcess


@pytest.fixture(scope="module")
def fuzz_backend(
    tmp_path_factory: pytest.TempPathFactory, layerfusion_cache: str
) -> Iterator[BackendProcess]:
    # Its own server: the fuzzer queues real (possibly large) tiny-model jobs, and a short queue keeps
    # that bounded; the process is stopped, jobs and all, when the module is done.
    backend = BackendProcess(
        output_dir=tmp_path_factory.mktemp("fuzz-output"), extra_args=("--max-queue", "2", "--no-previews")
    )
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()


def test_openapi_conformance_of_a_real_job(fuzz_backend: BackendProcess) -> None:
    """Random bodies almost never make a valid job, so walk one real job through every endpoint."""
    schema = schemathesis.openapi.from_url(fuzz_backend.url + "/openapi.json")
    checks = [not_a_server_error, response_schema_conformance]
    body = schema["/v1/jobs"]["POST"].definition.raw["requestBody"]["content"]["application/json"]["example"]
    created = (
        schema["/v1/jobs"]["POST"]
        .Case(body=body, media_type="application/json")
        .call_and_validate(checks=checks)
    )
    assert created.status_code == 202
    job_id = created.json()["id"]
    ident = {"id": job_id}
    # The stream lasts as long as the job; the first job after start-up pays warm-up costs.
    events = (
        schema["/v1/jobs/{id}/events"]["GET"]
        .Case(path_parameters=ident)
        .call_and_validate(checks=checks, timeout=600)
    )
    assert events.status_code == 200
    last_event = events.content.decode().strip().split("\n\n")[-1]
    assert last_event.startswith("event: status") and '"state":"done"' in last_event, last_event[:300]
    status = schema["/v1/jobs/{id}"]["GET"].Case(path_parameters=ident).call_and_validate(checks=checks)
    assert status.json()["state"] == "done"
    for name in status.json()["images"]:
        image = (
            schema["/v1/jobs/{id}/images/{name}.png"]["GET"]
            .Case(path_parameters={"id": job_id, "name": name})
            .call_and_validate(checks=checks)
        )
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    listing = schema["/v1/jobs"]["GET"].Case(query={"limit": 5}).call_and_validate(checks=checks)
    assert job_id in [job["id"] for job in listing.json()["jobs"]]
    cancel = schema["/v1/jobs/{id}"]["DELETE"].Case(path_parameters=ident).call_and_validate(checks=checks)
    assert cancel.json()["state"] == "done"  # cancelling a finished job changes nothing


MAX_EXAMPLES = 25


def test_openapi_fuzz(fuzz_backend: BackendProcess) -> None:
    schema = schemathesis.openapi.from_url(fuzz_backend.url + "/openapi.json")
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        check()
    # Every endpoint of the design was fuzzed.
    assert len(labels) == 8, labels
