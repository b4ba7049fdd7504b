#!/usr/bin/env bash
# The whole test suite, as CI runs it: engine/kit/face tests with the 80 % coverage gate on modules/ and
# serena_kit/, and every notebook under strict nbval. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest \
  --cov=modules --cov=serena_kit --cov-report=term --cov-fail-under=80 \
  "$@" test
