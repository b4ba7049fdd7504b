"""Schema fuzzing: schemathesis generates requests for every operation of /openapi.json against a real `serena
serve` with its limits lowered (64 px, 3 steps, 2 images): no 5xx, no hang (every answer within REQUEST_TIMEOUT),
every response matches the schema (status documented, body of the documented shape). Left out: schemathesis's
"schema-valid request accepted" check, because a request the schema allows may still be over this server's limits
(a 400 "limit exceeded" naming the field is the right answer; the limits are the server's, not the schema's).

CI runs at most FUZZ_EXAMPLES per operation; the documented run (docs/reliability.md) sets SERENA_FUZZ_EXAMPLES=200
and SERENA_FUZZ_REPORT=FILE for the counts. The examples are the same on every run (a red CI names a request that
stays red); SERENA_FUZZ_RANDOM=1 draws new ones.
"""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from faces.face_helpers import ApiServer, free_port, single_thread_env, stop, wait_until_serving
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.whole_machine  # a server under a stream of fuzzed requests

FUZZ_EXAMPLES = int(os.environ.get("SERENA_FUZZ_EXAMPLES", "15"))
REQUEST_TIMEOUT = 60
LOWERED_LIMITS = ["--max-size", "64", "--max-steps", "3", "--max-images", "2", "--max-request-mb", "1"]
statuses: collections.Counter = collections.Counter()


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzed_server")
    port = free_port()
    command = [sys.executable, "-m", "serena_kit", "serve", "--host", "127.0.0.1", "--port", str(port), "--threads"]
    command += ["1", "--outdir", str(root / "outputs"), "--models-dir", str(root / "models"), "--log-level", "error"]
    log = root / "server.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command + LOWERED_LIMITS, cwd=root, env=single_thread_env(), stdout=log_file, stderr=subprocess.STDOUT
        )
    server = ApiServer(f"http://127.0.0.1:{port}", root, root / "outputs", root / "models", process, log)
    try:
        wait_until_serving(server)
        yield server
    finally:
        stop(process)
        if report := os.environ.get("SERENA_FUZZ_REPORT"):
            Path(report).write_text(json.dumps({"requests": sum(statuses.values()), "statuses": statuses}, indent=1))


def fuzz(operation, server: ApiServer) -> None:
    """FUZZ_EXAMPLES generated requests for one operation, each called and validated against the schema."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=not os.environ.get("SERENA_FUZZ_RANDOM"),
    )
    def call(case):
        response = case.call_and_validate(
            base_url=server.url, timeout=REQUEST_TIMEOUT, excluded_checks=[positive_data_acceptance]
        )
        statuses[response.status_code] += 1
        assert server.alive(), server.log_text()

    call()


def test_every_operation_answers_fuzzed_requests_within_its_schema(fuzzed_server):
    schema = schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        fuzz(operation, fuzzed_server)
    assert sum(statuses.values()) >= len(operations) and not [status for status in statuses if status >= 500]
