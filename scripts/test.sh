#!/usr/bin/env bash
# The project's test command: Rust unit + integration tests, then the Python client tests
# (the real `openai` SDK in strict mode) against a live `tealight serve` on the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --all-targets

if [ -d tests/clients ] && compgen -G "tests/clients/test_*.py" >/dev/null; then
  venv="${TEALIGHT_TEST_VENV:-.cache/venv-clients}"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q -r tests/clients/requirements.txt
  cargo build --bin tealight
  "$venv/bin/python" -m pytest -q tests/clients
fi
