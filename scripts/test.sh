#!/usr/bin/env bash
# The project's test command: Rust unit + integration tests, then the Python client tests
# (the real `openai` and `anthropic` SDKs, strict) against a live `tealight serve` on the embedded
# model, replicas behind vllm-router, the Kubernetes manifests in deploy/ (validated offline), a
# bounded fuzz (schemathesis + mutations) and a short soak of a live server, and the real agent CLIs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --all-targets

if [ -d tests/clients ] && compgen -G "tests/clients/test_*.py" >/dev/null; then
  venv="${TEALIGHT_TEST_VENV:-.cache/venv-clients}"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q -r tests/clients/requirements.txt
  # `cargo test` above built target/debug/tealight for the integration tests (with the test
  # profile); a separate `cargo build` would recompile every dependency under the dev profile.
  if [ ! -x target/debug/tealight ]; then
    echo "test.sh: target/debug/tealight is missing after cargo test" >&2
    exit 1
  fi
  # promtool (Debian's prometheus package) checks the /metrics exposition (test_metrics.py).
  if ! command -v promtool >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null 2>&1 \
      || echo "test.sh: could not install promtool" >&2
  fi
  "$venv/bin/python" -m pytest -q tests/clients tests/deploy
  # Bounded versions of the reliability proofs (the full runs: scripts/reliability).
  "$venv/bin/python" scripts/reliability/fuzz_api.py --binary target/debug/tealight --requests 3000 --budget-s 60
  # A 40-second soak has not settled (RSS +0.8 % to +9 % measured); the 10-minute one holds 5 %.
  "$venv/bin/python" scripts/reliability/soak.py --binary target/debug/tealight \
    --duration 30 --warmup 10 --concurrency 48 --rss-tolerance 0.20
  # Every attack of the adversarial suite at its bounded size (the full sizes: scripts/reliability).
  "$venv/bin/python" scripts/reliability/adversarial.py --binary target/debug/tealight --short
fi

# The real agent CLIs (Codex CLI, Claude Code) against a live server, installed from npm into a
# cache outside the clone (about 40 s once installed). TEALIGHT_SKIP_AGENT_CLIS=1 skips them.
if [ "${TEALIGHT_SKIP_AGENT_CLIS:-0}" != 1 ]; then
  bash scripts/agent_clis.sh target/debug/tealight
fi
