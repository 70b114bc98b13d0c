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
# has no such switch (its `--json-schema` asks the model to call a tool), so the server runs
# with a generation config whose `eos_token_id` also lists newline tokens: the noise model's
# turn ends at its first line break, as a real model's ends at its end-of-turn token.
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
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="agent-cli-key"
mkdir -p "$work/genconfig"
python3 - "$work/genconfig/generation_config.json" <<'EOF'
import json, sys
config = json.load(open("models/qwen3-tiny/generation_config.json"))
tokenizer = json.load(open("models/qwen3-tiny/tokenizer.json"))
vocab = tokenizer["model"]["vocab"]
# Byte-level BPE spells "\n" as "Ċ": every token that is only newlines ends the turn too.
newlines = sorted(i for t, i in vocab.items() if t and set(t) == {"Ċ"})
config["eos_token_id"] = config["eos_token_id"] + newlines
json.dump(config, open(sys.argv[1], "w"))
EOF
"$binary" serve --host 127.0.0.1 --port "$port" --api-key "$key" \
  --served-model-name tealight-tiny --generation-config "$work/genconfig" \
  --disable-log-requests >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done

status=0
run() {
  local name="$1"; shift
  local start=$SECONDS
  if (cd "$work" && "$@" </dev/null >"$work/$name.out" 2>"$work/$name.err"); then
    if [ -s "$work/$name.out" ]; then
      echo "$name: exit 0 after $((SECONDS - start)) s; answer: $(tail -c 300 "$work/$name.out" | tr '\n' ' ')"
      return
    fi
    echo "$name: exit 0 but no answer" >&2
  else
    echo "$name: failed (exit $?) after $((SECONDS - start)) s" >&2
  fi
  tail -n 20 "$work/$name.err" >&2
  status=1
}

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
  "$bin/codex" exec --skip-git-repo-check --output-schema "$work/schema.json" \
  "Name one colour."

mkdir -p "$work/claude-home"
run claude env HOME="$work/claude-home" ANTHROPIC_BASE_URL="http://127.0.0.1:$port" \
  ANTHROPIC_API_KEY="$key" CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
  "$bin/claude" -p "Name one colour."

echo "requests the server answered:"
curl -s "http://127.0.0.1:$port/metrics" | grep '^tealight:http_requests_total' | grep -E 'responses|messages|"/"' || true
exit $status
