#!/usr/bin/env bash
# Drives the real agent CLIs against a live `tealight serve` on the embedded model:
#   - Codex CLI (npm @openai/codex): `codex exec` over the Responses API;
#   - Claude Code (npm @anthropic-ai/claude-code): `claude -p` over the Messages API.
# Each must finish with an answer and exit 0. The CLIs are installed from npm into a cache
# outside the clone ($TEALIGHT_AGENT_CLIS, default ~/.cache/tealight/agent-clis), so only the
# first run downloads them.
#
# The embedded model has random weights: its answers are noise, it never calls a tool, and it
# does not end a turn by itself (it writes until the token limit, which both CLIs treat as a
# failed turn). So Codex is given an output schema (`--output-schema`, sent as `text.format`):
# the guided decoder makes the answer a small JSON object and ends the turn there. Claude Code
# has no such switch (its `--json-schema` asks the model to call a tool), so it talks to a
# second server whose generation config lists every 64th token id as an end-of-sequence token
# (transformers' `eos_token_id` list): the noise model then ends a turn after ~64 tokens, as a
# trained model ends it with its end-of-turn token. (About one turn in 64 ends at once, with an
# empty answer.)
#
# Usage: scripts/agent_clis.sh [path/to/tealight]   (default: target/debug/tealight)
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-target/debug/tealight}"
[ -x "$binary" ] || { echo "agent_clis.sh: $binary not built" >&2; exit 1; }
prefix="${TEALIGHT_AGENT_CLIS:-$HOME/.cache/tealight/agent-clis}"
codex_version="${CODEX_VERSION:-0.171.0}"
claude_version="${CLAUDE_CODE_VERSION:-2.1.332}"
bin="$prefix/node_modules/.bin"

if [ "$("$bin/codex" --version 2>/dev/null)" != "codex-cli $codex_version" ] ||
  ! "$bin/claude" --version 2>/dev/null | grep -q "^$claude_version "; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    "@openai/codex@$codex_version" "@anthropic-ai/claude-code@$claude_version" >/dev/null
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

key="agent-cli-key"
# start_server NAME [flags...]: serves the embedded model on a free port; sets $port.
start_server() {
  local name="$1"; shift
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$binary" serve --host 127.0.0.1 --port "$port" --api-key "$key" \
    --served-model-name tealight-tiny --disable-log-requests "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && return
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "agent_clis.sh: $name did not become healthy" >&2
  exit 1
}

# served PATTERN: the server's request counters for routes matching PATTERN.
served() {
  curl -s "http://127.0.0.1:$port/metrics" | grep '^tealight:http_requests_total' | grep -E "$1" || true
}

passed=0
failed=0
# run NAME COMMAND...: runs a CLI in the scratch folder; it must exit 0.
run() {
  local name="$1"; shift
  local start=$SECONDS
  if (cd "$work" && timeout "${AGENT_CLI_TIMEOUT:-300}" "$@" </dev/null >"$work/$name.out" 2>"$work/$name.err"); then
    echo "$name: exit 0 after $((SECONDS - start)) s; answer: $(tail -c 300 "$work/$name.out" | tr '\n' ' ')"
    passed=$((passed + 1))
    return
  fi
  echo "$name: failed (exit $?) after $((SECONDS - start)) s" >&2
  tail -n 20 "$work/$name.err" >&2
  failed=$((failed + 1))
}

start_server codex-server
mkdir -p "$work/codex-home"
cat >"$work/codex-home/config.toml" <<EOF
model = "tealight-tiny"
model_provider = "tealight"
[model_providers.tealight]
name = "tealight"
base_url = "http://127.0.0.1:$port/v1"
env_key = "TEALIGHT_AGENT_KEY"
wire_api = "responses"
EOF
echo '{"type":"object","properties":{"answer":{"type":"string","maxLength":40}},"required":["answer"],"additionalProperties":false}' \
  >"$work/schema.json"
run codex env CODEX_HOME="$work/codex-home" TEALIGHT_AGENT_KEY="$key" \
  "$bin/codex" exec --skip-git-repo-check --output-schema "$work/schema.json" "Name one colour."
served responses

mkdir -p "$work/genconfig"
python3 - "$work/genconfig/generation_config.json" <<'EOF'
import json, sys
config = json.load(open("models/qwen3-tiny/generation_config.json"))
vocab_size = json.load(open("models/qwen3-tiny/config.json"))["vocab_size"]
config["eos_token_id"] = config["eos_token_id"] + list(range(64, vocab_size, 64))
json.dump(config, open(sys.argv[1], "w"))
EOF
start_server claude-server --generation-config "$work/genconfig"
mkdir -p "$work/claude-home"
run claude env HOME="$work/claude-home" ANTHROPIC_BASE_URL="http://127.0.0.1:$port" \
  ANTHROPIC_API_KEY="$key" CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
  "$bin/claude" -p "Name one colour."
served 'messages|route="/"'
echo "agent CLIs: $passed passed, $failed failed"
[ "$failed" = 0 ]
