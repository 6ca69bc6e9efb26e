"""The served /openapi.json is the server's contract: an outside tool holds the live server to it.

``schemathesis run --checks all`` (its command line, as any outside client would run it) fuzzes every
operation against a live tiny-model server, with and without a token, and must find nothing: no 5xx,
every status, header and body as declared, schema-breaking input refused, schema-valid input taken
(tests/server/schemathesis.toml says why 422 counts as taken), a deleted job gone, auth enforced
exactly where declared. A real job is also walked through every endpoint.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.backend_process import BackendProcess

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Examples per operation and a fixed seed: the same bounded run every time (about a minute each way).
MAX_EXAMPLES = 20
SEED = 20261202
TOKEN = "contract-test-token"


def _fuzz_server(output: Path, token: Optional[str] = None) -> BackendProcess:
    # Its own server: the fuzzer queues real (possibly large) tiny-model jobs, and a short queue keeps
    # that bounded; the process is stopped, jobs and all, when the test is done.
    return BackendProcess(output_dir=output, token=token, extra_args=("--max-queue", "2", "--no-previews"))


@pytest.fixture(scope="module")
def fuzz_backend(
    tmp_path_factory: pytest.TempPathFactory, layerfusion_cache: str
) -> Iterator[BackendProcess]:
    with _fuzz_server(tmp_path_factory.mktemp("fuzz-output")) as backend:
        yield backend


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
    cancel = (
        schema["/v1/jobs/{id}/cancel"]["POST"].Case(path_parameters=ident).call_and_validate(checks=checks)
    )
    assert cancel.json()["state"] == "done"  # cancelling a finished job changes nothing
    delete = schema["/v1/jobs/{id}"]["DELETE"].Case(path_parameters=ident).call_and_validate(checks=checks)
    assert delete.status_code == 204
    gone = schema["/v1/jobs/{id}"]["GET"].Case(path_parameters=ident).call_and_validate(checks=checks)
    assert gone.status_code == 404
    assert not (fuzz_backend.output_dir / job_id).exists()  # record and PNGs went with it


def _schemathesis(backend: BackendProcess, cwd: Path) -> "subprocess.CompletedProcess[str]":
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        backend.url + "/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "120",
        "--no-color",
    ]
    if backend.token:
        command += ["--header", "Authorization: Bearer " + backend.token]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
def test_schemathesis_finds_nothing(tmp_path: Path, layerfusion_cache: str, token: Optional[str]) -> None:
    with _fuzz_server(tmp_path / "out", token) as backend:
        run = _schemathesis(backend, tmp_path)
        log = backend.log_tail()
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report + "\n" + log
    assert "No issues found" in run.stdout, report
    # Every operation of the document was exercised, not skipped.
    assert "Tested: 9" in run.stdout, report
