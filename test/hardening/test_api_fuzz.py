"""Schema fuzzing: schemathesis, every check, against a real `serena serve` with its limits lowered (64 px, 3 steps, 2
images): no 5xx, no hang (every answer within REQUEST_TIMEOUT), every response within the schema, and the schema
truthful both ways (schema-valid requests accepted, schema-violating ones refused; modules.api.schema), the Allow
header of a 405 listing the path's documented methods.

It runs schemathesis's own command (`st run -c all`, all phases: examples, coverage, fuzzing, stateful) with the
image format of the schema drawn as real images (fuzz_hooks.py). CI runs at most FUZZ_EXAMPLES per operation; the
documented run (docs/reliability.md) sets SERENA_FUZZ_EXAMPLES=200 and SERENA_FUZZ_REPORT=FILE for the counts. The
examples are the same on every run (--generation-deterministic); SERENA_FUZZ_RANDOM=1 draws new ones.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from faces.face_helpers import ApiServer, free_port, single_thread_env, stop, wait_until_serving

from modules import generation_fields

pytestmark = pytest.mark.whole_machine  # a server under a stream of fuzzed requests

FUZZ_EXAMPLES = int(os.environ.get("SERENA_FUZZ_EXAMPLES", "10"))
REQUEST_TIMEOUT = 60
LOWERED_LIMITS = ["--max-size", "64", "--max-steps", "3", "--max-images", "2", "--max-request-mb", "1"]


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


def run_schemathesis(server: ApiServer, report: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "schemathesis.cli", "run", server.url + "/openapi.json", "--checks", "all"]
    command += ["--max-examples", str(FUZZ_EXAMPLES), "--request-timeout", str(REQUEST_TIMEOUT), "--no-color"]
    command += ["--report", "junit", "--report-junit-path", str(report), "--warnings", "off"]
    if not os.environ.get("SERENA_FUZZ_RANDOM"):
        command.append("--generation-deterministic")
    environment = os.environ | {"SCHEMATHESIS_HOOKS": "fuzz_hooks", "PYTHONPATH": str(Path(__file__).parent)}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=1800)


# Rules between fields that the schema does not state (schemathesis's generator rejects them as if/then clauses,
# docs/reliability.md): a schema-valid request breaking one is refused with 400 naming one of these fields.
# Also: the guidance interval's start below its end, the perturbed layers the loaded model has, the instruments
# (attention maps, trajectory) not with a script, and the hires image (size x scale) within the size limits.
UNSTATED_RULES = {"init_images", "script_args", "guidance_start", "perturbed_layers", "attention_maps", "trajectory"}
UNSTATED_RULES |= {"hr_scale", "hr_resize_x"}
# And the option names override_settings may hold: the server's engine and stored options (docs/reliability.md).
UNSTATED_RULES |= {"override_settings"}
# And a ControlNet unit's own fields and rules (docs/controlnet.md), which the schema leaves to the unit's check.
UNSTATED_RULES |= {"alwayson_scripts.controlnet.args"}
UNSTATED_RULES |= set(generation_fields.per_image_names())
FAILURE_BLOCK = re.compile(r"^- (ST\d{3}) .*?(?=^- ST|^_{5,}|^={5,})", re.S | re.M)


def test_every_check_passes_on_every_operation(fuzzed_server, tmp_path):
    completed = run_schemathesis(fuzzed_server, tmp_path / "junit.xml")
    output = completed.stdout
    summary = output[output.rfind("SUMMARY") :]
    print(summary)
    if report := os.environ.get("SERENA_FUZZ_REPORT"):
        Path(report).write_text(summary)
    assert fuzzed_server.alive(), fuzzed_server.log_text()
    assert "Tested: " in summary and "Errors:" not in summary, output[-6000:] + completed.stderr[-2000:]
    failures = [(match[1], match[0]) for match in FAILURE_BLOCK.finditer(output[output.find("= FAILURES =") :])]
    found = re.search(r"(\d+) unique failures?", summary)
    assert len(failures) == (int(found[1]) if found else 0), summary  # every failure read
    for code, block in failures:
        field = re.search(r'"field":"([^"]*)"', block)
        assert code == "ST202" and field and field[1].split("[")[0] in UNSTATED_RULES, block[:3000]
