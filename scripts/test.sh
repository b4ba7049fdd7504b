#!/usr/bin/env bash
# The whole test suite, as CI runs it: engine, kit, face and browser tests with the 80 % coverage gate on modules/
# and serena_kit/, and every notebook under strict nbval (outputs compared, volatile text sanitized).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest \
  --cov=modules --cov=serena_kit --cov-report=term --cov-fail-under=80 \
  --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg \
  -p no:cacheprovider \
  "$@" test notebooks
