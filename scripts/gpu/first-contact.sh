#!/usr/bin/env bash
# First contact with a GPU machine: ONE device run (at most DEADLINE = 470 s) whose verdict can
# be trusted either way: it settles correctness and speed of the CUDA build. Packed here first
# (scripts/gpu/README.md says what to run in what order):
#
#   scripts/cuda/build.sh --bin tealight && scripts/gpu/fetch-wheels.sh && scripts/gpu/pack.sh
#   run(command="bash scripts/gpu/first-contact.sh", carry=["target/gpu", ".whl"], timeout_s=600)
#   run(command="bash scripts/gpu/follow-up.sh", carry=["target/gpu", ".whl"], timeout_s=150)
#
#   scripts/gpu/first-contact.sh --smoke       # rehearsal on the CPU build (the tests run it)
#
# Setup (budget 60 s): the binary (`--version` must exit 0, `ldd -r` must find every library and
# symbol), the checkpoints started in the background first, then a CUDA pre-flight (`debug
# preflight`: ~10 s of candle's kernels against the CPU; fails fast, fills the JIT cache). A
# failed setup is a FAIL row and a non-zero exit.
# Stages, in priority order, each with its own time budget in seconds:
#   a serve    (120) the user's command on a Qwen3-4B-shaped bf16 checkpoint made on the machine
#                    with transformers: `serve --model DIR --served-model-name Qwen3-4B --port 6666
#                    --api-key 111 --device cuda`; the server's own report of its device must be
#                    the GPU; time to ready, one chat completion and one stream through the openai
#                    SDK after a request that primes the prefix cache (greedy: the streamed text
#                    and reasoning must equal the completion's), and a seeded sampled completion
#                    twice (the device sampler; same text both times)
#   b logits    (80) Qwen3-0.6B shape, bf16: tealight's logits (default backend, then `cuda`) in a
#                    chunked-prefill + decode schedule against transformers bf16 and f32
#   c kernels   (60) the own CUDA kernels against their CPU twins (`tealight debug kernels`), over
#                    caches of the activations' dtype and narrower ones (fp8 beside bf16/f16, f16
#                    beside bf16); one layer's attention timed: generic, cuda, cuda over fp8 KV
#   d bench    (110) `tealight bench` 1024 in / 128 out at concurrency 1, 16, 64 (and 256 when
#                    time is left) against the user's command; the c=1 decode rate as a fraction
#                    of the HBM roofline of the GPU found (H100 3.35, H200 4.8 TB/s). Skipped at
#                    once when stage a's server never answered /health
#   e streams   (40) 24 concurrent greedy streams through the engine equal to their solo runs (f32)
#   g spec      (90) only with its need (60 s) left, reported beside the verdict like f: the 0.6B
#                    checkpoint served with speculative decoding off and with `ngram`, `tealight
#                    bench` at c=1 and c=16 on each; FAIL if a request fails or ngram makes c=16
#                    more than 5 % slower (speculation must never cost throughput)
#   h moe       (90) only with its need (45 s) left, reported beside the verdict like f: a random-
#                    weight Qwen3-MoE checkpoint (128 experts' routing width: 64 experts, top-8,
#                    4 layers of hidden 1024; written by scripts/fixtures/synthetic_qwen3.py in the
#                    background from the start) through `debug logits` on the device in bf16 against
#                    the CPU's f32 and bf16 runs (compare_devices.py: the device within 2 × the CPU's
#                    own bf16 noise, top-1 agreeing on decisive rows; routing and expert grouping on
#                    the device); then served with the user's command on the device it must report
#                    and benched (128 in / 32 out, c=2)
#   i kv-fp8    (60) only with its need (30 s) left, reported beside the verdict like f: the 0.6B
#                    checkpoint's logits with an fp8 (e4m3) KV cache on the device in bf16 through
#                    the `generic` backend (CUDA's default; fp8 rows written by the own slot-copy
#                    kernel, read by candle's gather and cast) and the `cuda` backend (the own
#                    kernels widen the fp8 rows), against the CPU's f32 run on its own fp8 cache
#                    and the CPU's bf16 run through `generic` (compare_devices.py: within 2 × the
#                    CPU's own bf16 noise)
#   f quant    (120) only with its need (100 s) left, and reported beside the a-e verdict: the
#                    0.6B checkpoint as a Q4_K_M GGUF file (written in the background from the
#                    start) and with `--quantization fp8`: logits on the device against the CPU's
#                    own kernels, within what the quantization itself moves
#                    (compare_devices.py); then the GGUF file served and benched at c=1
# A stage ends PASS or FAIL: one that ran and failed (a timeout too) is FAIL. SKIP is only for a
# stage that never started: no time left, the setup failed, stage a's server never came up (d),
# or (--smoke) no torch for it.
#
# Results in $OUT (default $TEALIGHT_GPU_WORK/out): summary.json (rewritten after every stage;
# "verdict" covers setup and a-e, stages f, g, h and i are in "other_stages"), first-contact.log (everything
# printed), serve-a.log, serve-d.log, serve-f.log, bench.json. Exit 0 iff the verdict has no FAIL.
# --follow-up: stage f alone within 85 s on the still-warm machine (scripts/gpu/follow-up.sh).
# Environment: TEALIGHT_BIN, PYTHON (with torch), TEALIGHT_GPU_WORK (scratch, default
# /tmp/tealight-gpu), DEADLINE (seconds), STAGES (e.g. "a d"), PORT (default 6666),
# WANT_DEVICE (the device the server must report: cuda, or cpu with --smoke).
# The stage_* functions are called indirectly ("stage_$id").
# shellcheck disable=SC2329
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/gpu/lib.sh
source "$HERE/lib.sh"

SMOKE=0 FOLLOW_UP=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    --follow-up) FOLLOW_UP=1 ;;
    -h | --help) sed -n '2,48p' "$0"; exit 0 ;;
    *) die "unknown argument $arg" ;;
  esac
done

RESERVE=8 # seconds kept for the summary at the end
SETUP_BUDGET=60
API_KEY=111
SERVED=Qwen3-4B
if [[ $SMOKE -eq 1 ]]; then
  DEVICE=cpu
  PORT="${PORT:-$((20000 + RANDOM % 20000))}"
  BENCH_IN=32 BENCH_OUT=4 BENCH_LEVELS="1 4" BENCH_EXTRA=""
  SPEC_IN=32 SPEC_OUT=16 SPEC_LEVELS="1 4"
  STREAMS=8 STREAM_TOKENS=6
  LOGIT_BACKENDS="auto generic"
  KERNEL_FLAGS=(--small)
  GGUF_TYPE=q8_0 # the tiny model's widths are not multiples of the K-quants' 256
else
  DEVICE=cuda
  PORT="${PORT:-6666}"
  BENCH_IN=1024 BENCH_OUT=128 BENCH_LEVELS="1 16 64" BENCH_EXTRA=256
  SPEC_IN=512 SPEC_OUT=128 SPEC_LEVELS="1 16"
  STREAMS=24 STREAM_TOKENS=24
  LOGIT_BACKENDS="auto cuda"
  KERNEL_FLAGS=(--bench --iters 10)
  GGUF_TYPE=q4_k_m
fi
WANT_DEVICE="${WANT_DEVICE:-$DEVICE}"
# The driver's JIT cache of PTX (candle's modules, the own kernels): large enough for all of
# them, so that what the pre-flight and stage a compile is not compiled again.
export CUDA_CACHE_MAXSIZE="${CUDA_CACHE_MAXSIZE:-4294967296}"
ALL_STAGES="a b c d e f g h i"
if [[ $FOLLOW_UP -eq 1 ]]; then
  DEADLINE="${DEADLINE:-85}"
  STAGES="${STAGES:-f}"
  VERDICT_STAGES="setup $STAGES"
else
  DEADLINE="${DEADLINE:-470}"
  STAGES="${STAGES:-$ALL_STAGES}"
  VERDICT_STAGES="setup a b c d e"
fi

OUT="${OUT:-$WORK/out}"
mkdir -p "$OUT" "$WORK"
rm -f "$WORK"/stages.tsv "$WORK"/metrics-*.json
exec > >(tee -a "$OUT/first-contact.log") 2>&1
log "first-contact: $([[ $SMOKE -eq 1 ]] && echo smoke rehearsal on the CPU || echo GPU run), deadline ${DEADLINE}s, stages: $STAGES"

# ---- time ---------------------------------------------------------------------------------------
STAGE_END=0
left() { # seconds left in the current stage (at least 1)
  local l=$((STAGE_END - SECONDS))
  ((l < 1)) && l=1
  echo "$l"
}
# Runs a command within the stage's time; 124/137 mean it was stopped there.
within() { timeout -k 10 "$(left)" "$@"; }
timed_out() { [[ $1 -eq 124 || $1 -eq 137 ]]; }

# ---- results ------------------------------------------------------------------------------------
STATUS="" DETAIL=""
pass() { STATUS=PASS DETAIL="$*"; }
fail() { STATUS=FAIL DETAIL="$*"; log "FAIL: $*"; }
record() { # id name status seconds budget detail
  local detail="${6//$'\t'/ }"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${detail//$'\n'/ }" >>"$WORK/stages.tsv"
  write_summary
}
write_summary() {
  local py="${PY_ANY:-python3}"
  "$py" "$HERE/first_contact.py" summary --stages "$WORK/stages.tsv" --meta "$WORK/meta.json" \
    --metrics-dir "$WORK" --verdict-stages "$VERDICT_STAGES" --out "$OUT/summary.json" ||
    log "warning: could not write summary.json"
}

# ---- processes ----------------------------------------------------------------------------------
SERVE_PID=""
stop_serve() { # SIGTERM (a drain), SIGKILL after 10 s
  [[ -n "$SERVE_PID" ]] || return 0
  kill -TERM "$SERVE_PID" 2>/dev/null
  (sleep 10 && kill -KILL "$SERVE_PID" 2>/dev/null) &
  local killer=$!
  wait "$SERVE_PID" 2>/dev/null
  kill "$killer" 2>/dev/null
  wait "$killer" 2>/dev/null
  SERVE_PID=""
}
trap 'stop_serve; jobs -p | xargs -r kill 2>/dev/null' EXIT

# The user's command, on the device the stage is meant for (stage a, and the server stage d
# measures). Sets SERVE_PID and READY_S; returns 1 when /health never answered.
start_user_serve() { # checkpoint log [extra serve flags…]
  local started=$SECONDS ckpt="$1" log="$2"
  shift 2
  "$TL" serve --model "$ckpt" --served-model-name "$SERVED" --port "$PORT" --api-key "$API_KEY" \
    --device "$DEVICE" "$@" >"$log" 2>&1 &
  SERVE_PID=$!
  if ! "$PY_ANY" "$HERE/serve_client.py" wait --base "http://127.0.0.1:$PORT" --timeout "$(left)" \
    --pid "$SERVE_PID"; then
    tail -20 "$log"
    return 1
  fi
  READY_S=$((SECONDS - started))
  log "serve ready in ${READY_S}s: $(grep -m1 -o 'device: .*' "$log" || true); $(grep -m1 -o 'KV cache: .*' "$log" || true)"
}

# The running server's own report of its device must be the one the stage is meant for: a
# server that fell back to the CPU must not pass for a GPU run.
check_served_device() { # out.json
  within "$PY_ANY" "$HERE/first_contact.py" device --base "http://127.0.0.1:$PORT" \
    --want "$WANT_DEVICE" --out "$1" >/dev/null
}
served_device() { # out.json
  "$PY_ANY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("device"))' "$1" 2>/dev/null || echo unknown
}

# ---- setup --------------------------------------------------------------------------------------
PY_ANY="" PY_TORCH="" PY_SDK="" SETUP_OK=1 SETUP_WHY="" CKPT_4B="" CKPT_06B="" CKPT_JOB="" CKPT_MOE=""
GGUF="" SERVE_DEAD="" GPU_NAME="cpu" GPU_LINE=""

has_module() { "$1" -c "import $2" >/dev/null 2>&1; }
setup_fail() { SETUP_WHY="$*"; log "setup: FAIL: $*"; return 1; }

# In order of what the clock needs first: the python that makes the checkpoints, then the
# checkpoints (in the background), then the binary, its libraries and the pre-flight.
setup() {
  local p
  for p in "${PYTHON:-}" python3 /opt/torch/.venv/bin/python3 python; do
    if [[ -z "$p" ]] || ! command -v "$p" >/dev/null 2>&1; then continue; fi
    [[ -z "$PY_ANY" ]] && PY_ANY="$(command -v "$p")"
    if [[ -z "$PY_TORCH" ]] && has_module "$p" "torch, transformers, numpy"; then
      PY_TORCH="$(command -v "$p")"
    fi
  done
  [[ -n "$PY_ANY" ]] || { setup_fail "no python at all"; return 1; }
  export PY="${PY_TORCH:-$PY_ANY}" # lib.sh's helpers use $PY
  make_moe_checkpoint_bg
  if [[ $SMOKE -eq 1 ]]; then
    CKPT_4B="$REPO/models/qwen3-tiny" CKPT_06B="$REPO/models/qwen3-tiny"
  else
    CKPT_4B="$WORK/qwen3-4b" CKPT_06B="$WORK/qwen3-0.6b"
    make_checkpoints_bg
  fi
  if [[ $SMOKE -eq 1 && -z "${TEALIGHT_BIN:-}" && -x "$REPO/target/debug/tealight" ]]; then
    TEALIGHT_BIN="$REPO/target/debug/tealight"
  fi
  # lib.sh's helpers exit on failure: try them in a subshell first, so that a failed setup is
  # reported as such; the binary it unpacked is reused.
  (find_binary) || { setup_fail "no usable tealight binary (see above)"; return 1; }
  [[ -z "${TEALIGHT_BIN:-}" && -x "$WORK/tealight" ]] && TEALIGHT_BIN="$WORK/tealight"
  find_binary
  if [[ $DEVICE == cuda ]]; then
    (setup_libraries) || { setup_fail "the CUDA libraries the binary needs are missing (see above)"; return 1; }
    setup_libraries
  fi
  check_binary || return 1
  # The openai SDK: already importable, or from the wheels carried in .whl/.
  if has_module "$PY_ANY" openai; then
    PY_SDK="$PY_ANY"
  elif compgen -G "$REPO/.whl/*.whl" >/dev/null; then
    log "installing the carried wheels: $(find "$REPO/.whl" -name '*.whl' -printf '%f ')"
    "$PY_ANY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" "$REPO"/.whl/*.whl || log "warning: the wheels did not install"
    if PYTHONPATH="$WORK/site" has_module "$PY_ANY" openai; then
      PY_SDK="env PYTHONPATH=$WORK/site $PY_ANY"
    fi
  fi
  [[ -n "$PY_SDK" ]] || log "warning: no openai SDK (stage a will fail): carry .whl (scripts/gpu/fetch-wheels.sh)"
  log "python: any=$PY_ANY torch=${PY_TORCH:-none} sdk=${PY_SDK:-none}"
  if [[ $DEVICE == cuda ]]; then
    GPU_LINE="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
    GPU_NAME="${GPU_LINE%%,*}"
    log "gpu: $GPU_LINE"
  fi
  write_meta
  make_gguf_bg
  preflight || return 1
}

# The binary starts and links: `--version` exits 0, and `ldd -r` finds every library and symbol
# (a binary built against other CUDA libraries fails here, not in stage a).
check_binary() {
  local version rc unresolved
  version="$(timeout 20 "$TL" --version 2>&1)"
  rc=$?
  [[ $rc -eq 0 ]] || { printf '%s\n' "$version" | tail -5; setup_fail "$TL --version exited $rc: $(printf '%s' "$version" | tail -1)"; return 1; }
  log "binary: $TL ($(printf '%s' "$version" | head -1))"
  if command -v ldd >/dev/null 2>&1; then
    unresolved="$(ldd -r "$TL" 2>&1 | grep -E 'not found|undefined symbol' || true)"
    if [[ -n "$unresolved" ]]; then
      printf '%s\n' "$unresolved" | head -10
      setup_fail "ldd -r: $(printf '%s\n' "$unresolved" | wc -l) unresolved: $(printf '%s' "$unresolved" | head -2 | tr '\n\t' '  ')"
      return 1
    fi
  fi
}

# ~10 s of candle's kernels on the device against the CPU: a broken device or driver fails here
# in seconds, and the PTX modules the stages load are JIT-compiled into the driver's cache while
# the checkpoints are still being made. The quantized module (stage f's) in the background.
preflight() {
  local rc
  log "== pre-flight: debug preflight --device $DEVICE"
  timeout -k 5 45 "$TL" debug preflight --device "$DEVICE" | tee "$WORK/preflight.txt"
  rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 ]]; then
    setup_fail "the $DEVICE pre-flight failed (exit $rc): $(grep -m1 -o 'preflight [a-z0-9-]* failed.*' "$WORK/preflight.txt" || tail -1 "$WORK/preflight.txt")"
    return 1
  fi
  if [[ $DEVICE == cuda && " $STAGES " == *" f "* ]]; then
    ("$TL" debug preflight --device "$DEVICE" --quantized >"$WORK/preflight-quantized.txt" 2>&1 &)
  fi
}

write_meta() {
  "${PY_ANY:-python3}" - "$WORK/meta.json" "$SMOKE" "$DEVICE" "$GPU_NAME" "$GPU_LINE" "$TL" "$DEADLINE" \
    "$SETUP_BUDGET" "$RESERVE" "${BUDGET[a]} ${BUDGET[b]} ${BUDGET[c]} ${BUDGET[d]} ${BUDGET[e]} ${BUDGET[f]} ${BUDGET[g]} ${BUDGET[h]} ${BUDGET[i]}" <<'PY'
import json, sys, time
out, smoke, device, gpu, line, binary, deadline, setup, reserve, budgets = sys.argv[1:]
json.dump({"script": "first-contact", "mode": "smoke" if smoke == "1" else "gpu", "device": device,
           "gpu": gpu, "nvidia_smi": line, "binary": binary, "deadline_s": int(deadline),
           "setup_budget_s": int(setup), "reserve_s": int(reserve),
           "budgets_s": dict(zip("abcdefghi", map(int, budgets.split()))),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, open(out, "w"), indent=2)
PY
}

# Both checkpoints in one python process (one torch import), 4B first: stage a needs it first.
# make_checkpoint.py marks each finished one with DIR/.complete; the job's exit status lands in
# checkpoints.rc.
make_checkpoints_bg() {
  [[ -n "$PY_TORCH" ]] || return 0
  [[ -f "$CKPT_4B/.complete" && -f "$CKPT_06B/.complete" ]] && return 0
  log "making the 4b and 0.6b checkpoints in the background"
  rm -f "$WORK/checkpoints.rc"
  (
    "$PY_TORCH" "$HERE/make_checkpoint.py" --shape 4b --out "$CKPT_4B" --shape 0.6b --out "$CKPT_06B" \
      >"$WORK/checkpoints.log" 2>&1
    echo $? >"$WORK/checkpoints.rc"
  ) &
  CKPT_JOB=1
}

# Stage h's MoE checkpoint (numpy only, one core: ~20 s at moe-small, the tiny one in a rehearsal);
# its exit status lands in moe.rc.
make_moe_checkpoint_bg() {
  [[ " $STAGES " == *" h "* ]] || return 0
  local shape=moe-small
  [[ $SMOKE -eq 1 ]] && shape=moe-tiny
  CKPT_MOE="$WORK/qwen3-$shape"
  [[ -s "$WORK/moe.rc" && "$(cat "$WORK/moe.rc")" == 0 && -f "$CKPT_MOE/config.json" ]] && return 0
  rm -f "$WORK/moe.rc"
  (
    "$PY_ANY" "$REPO/scripts/fixtures/synthetic_qwen3.py" --shape "$shape" --out "$CKPT_MOE" >"$WORK/moe.log" 2>&1
    echo $? >"$WORK/moe.rc"
  ) &
}

# Stage f's GGUF file, written in the background as soon as the 0.6B checkpoint is complete
# (single-threaded quantization: a minute or more for Q4_K_M), so stage f finds it ready.
make_gguf_bg() {
  [[ " $STAGES " == *" f "* ]] || return 0
  GGUF="$WORK/qwen3-0.6b-$GGUF_TYPE.gguf"
  [[ -s "$WORK/gguf.rc" && "$(cat "$WORK/gguf.rc")" == 0 && -f "$GGUF" ]] && return 0
  rm -f "$WORK/gguf.rc"
  (
    while [[ ! -f "$CKPT_06B/config.json" || ( -n "$CKPT_JOB" && ! -f "$CKPT_06B/.complete" ) ]]; do
      [[ -s "$WORK/checkpoints.rc" && ! -f "$CKPT_06B/.complete" ]] && { echo 1 >"$WORK/gguf.rc"; exit; }
      sleep 1
    done
    "$TL" debug gguf --model "$CKPT_06B" --out "$GGUF" --type "$GGUF_TYPE" >"$WORK/gguf.log" 2>&1
    echo $? >"$WORK/gguf.rc"
  ) &
}

# Waits for a checkpoint of the background job within the stage's time.
await_checkpoint() { # shape dir
  if [[ -n "$CKPT_JOB" ]]; then
    while [[ ! -f "$2/.complete" && ! -s "$WORK/checkpoints.rc" ]] && ((SECONDS < STAGE_END)); do sleep 1; done
    if [[ ! -f "$2/.complete" ]]; then
      if [[ -s "$WORK/checkpoints.rc" ]]; then
        tail -5 "$WORK/checkpoints.log"
        fail "making the $1 checkpoint failed: $(tail -1 "$WORK/checkpoints.log")"
      else
        fail "the $1 checkpoint was not ready within the stage's time"
      fi
      return 1
    fi
    log "$1 checkpoint: $(grep -m1 "^$1 checkpoint" "$WORK/checkpoints.log")"
  fi
  [[ -f "$2/config.json" ]] || { fail "no $1 checkpoint in $2 (needs python with torch)"; return 1; }
}

# ---- stages -------------------------------------------------------------------------------------
stage_a() {
  await_checkpoint 4b "$CKPT_4B" || return
  [[ -n "$PY_SDK" ]] || { fail "no openai SDK to call the server with"; return; }
  if ! start_user_serve "$CKPT_4B" "$OUT/serve-a.log"; then
    SERVE_DEAD="stage a's server never answered /health"
    fail "serve did not answer /health (see serve-a.log)"
    stop_serve
    return
  fi
  local rc device_ok=1
  check_served_device "$WORK/device-a.json" || device_ok=0
  # shellcheck disable=SC2086
  within $PY_SDK "$HERE/first_contact.py" sdk --base "http://127.0.0.1:$PORT/v1" --api-key "$API_KEY" \
    --model "$SERVED" --metrics "$WORK/metrics-a.json" --timeout "$(left)"
  rc=$?
  "$PY_ANY" - "$WORK/metrics-a.json" "$READY_S" "$WORK/device-a.json" <<'PY'
import json, sys
path, ready, device = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def read(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return {}
m = read(path)
m["ready_s"] = ready
m["served_device"] = read(device)
json.dump(m, open(path, "w"), indent=2, ensure_ascii=False)
PY
  stop_serve
  if [[ $device_ok -eq 0 ]]; then
    fail "the server runs on $(served_device "$WORK/device-a.json"), not $WANT_DEVICE (its own report, tealight:device_info)"
  elif [[ $rc -eq 0 ]]; then
    pass "ready in ${READY_S}s on $(served_device "$WORK/device-a.json"); through the openai SDK: completion and stream agree, a seed repeats its sampled text"
  elif timed_out $rc; then
    fail "the SDK calls did not finish within the stage's time"
  else
    fail "SDK check failed (exit $rc): $("$PY_ANY" -c 'import json, sys; print("; ".join(json.load(open(sys.argv[1])).get("problems", []))[:300])' "$WORK/metrics-a.json" 2>/dev/null)"
  fi
}

stage_b() {
  await_checkpoint 0.6b "$CKPT_06B" || return
  local prompts="$WORK/prompts-b.json" backend base got=() failed=() rc
  "$PY_ANY" -c 'import json, random, sys
random.seed(7)
json.dump([[random.randrange(151643) for _ in range(n)] for n in (200, 180, 160)], open(sys.argv[1], "w"))' "$prompts"
  for backend in $LOGIT_BACKENDS; do
    base="$WORK/logits-$backend"
    log "== b: tealight bf16 logits, attention $backend"
    within "$TL" debug logits --model "$CKPT_06B" --device "$DEVICE" --dtype bf16 \
      --attention-backend "$backend" --prompts "$prompts" --prefill 64 --chunk 32 --out "$base"
    rc=$?
    if [[ $rc -eq 0 ]]; then got+=("$backend=$base.npy"); else failed+=("$backend (exit $rc)"); fi
  done
  if [[ ${#got[@]} -eq 0 ]]; then
    fail "tealight debug logits failed: ${failed[*]}"
    return
  fi
  local first="${got[0]#*=}"
  log "== b: transformers bf16 and f32"
  within "$PY_TORCH" "$HERE/reference_logits.py" --model "$CKPT_06B" --prompts "$prompts" \
    --rows "${first%.npy}.json" --out "$WORK/ref-b"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    fail "transformers reference failed (exit $rc)"
    return
  fi
  within "$PY_TORCH" "$HERE/compare_logits.py" --ref "$WORK/ref-b" --label "0.6b:" --got "${got[@]}" \
    | tee "$WORK/compare-b.txt"
  rc=$?
  "$PY_ANY" - "$WORK/compare-b.txt" "$WORK/metrics-b.json" <<'PY'
import json, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
rows = {l[0]: {"vs_hf_bf16": l[1], "vs_hf_f32": l[2], "decisive": l[3], "rms": l[4], "rms_over_hf": l[5],
               "max": l[6], "result": l[7]} for l in lines[2:] if len(l) >= 8}
json.dump({"header": " ".join(lines[0]) if lines else "", "backends": rows}, open(sys.argv[2], "w"), indent=2)
PY
  rm -f "$WORK"/logits-*.npy "$WORK"/ref-b.*.npy
  if [[ ${#failed[@]} -gt 0 ]]; then
    fail "debug logits failed for ${failed[*]}; compared: ${got[*]%%=*}"
  elif [[ $rc -eq 0 ]]; then
    pass "backends $LOGIT_BACKENDS agree with transformers (decisive rows, RMS vs bf16 noise)"
  else
    fail "logits differ from transformers (exit $rc; table in first-contact.log)"
  fi
}

stage_c() {
  local rc
  within "$TL" debug kernels --device "$DEVICE" "${KERNEL_FLAGS[@]}" | tee "$WORK/kernels.txt"
  rc=$?
  local cases
  cases="$(grep -cE ' (ok|FAIL)' "$WORK/kernels.txt")"
  if [[ $rc -eq 0 ]]; then
    pass "$cases kernel cases equal their CPU twins"
  elif timed_out "$rc"; then
    fail "debug kernels did not finish within the stage's time"
  else
    fail "$(grep -c FAIL "$WORK/kernels.txt") of $cases kernel cases differ from their CPU twins (exit $rc)"
  fi
}

stage_d() {
  await_checkpoint 4b "$CKPT_4B" || return
  if ! start_user_serve "$CKPT_4B" "$OUT/serve-d.log"; then
    fail "serve did not answer /health (see serve-d.log)"
    stop_serve
    return
  fi
  if ! check_served_device "$WORK/device-d.json"; then
    stop_serve
    fail "the server runs on $(served_device "$WORK/device-d.json"), not $WANT_DEVICE: a bench of it would not be the GPU's"
    return
  fi
  local c n rc results=() failed=()
  for c in $BENCH_LEVELS $BENCH_EXTRA; do
    if [[ "$c" == "$BENCH_EXTRA" ]] && (($(left) < 90)); then
      log "d: c=$c left out: $(left)s left in the stage"
      continue
    fi
    n=$((c == 1 ? 4 : (c >= 256 ? c : 2 * c)))
    log "== d: tealight bench, concurrency $c, $n prompts"
    within "$TL" bench --base-url "http://127.0.0.1:$PORT/v1" --api-key "$API_KEY" --model "$SERVED" \
      --tokenizer "$CKPT_4B" --input-len "$BENCH_IN" --output-len "$BENCH_OUT" --num-prompts "$n" \
      --max-concurrency "$c" --no-progress --result-file "$WORK/bench-c$c.json"
    rc=$?
    if [[ $rc -eq 0 && -f "$WORK/bench-c$c.json" ]]; then
      results+=("$WORK/bench-c$c.json")
    else
      failed+=("c=$c (exit $rc)")
      timed_out "$rc" && break
    fi
  done
  stop_serve
  if [[ ${#results[@]} -gt 0 ]]; then
    "$PY_ANY" "$HERE/first_contact.py" bench-report --results "${results[@]}" --model-dir "$CKPT_4B" \
      --gpu "$GPU_NAME" --input-len "$BENCH_IN" --output-len "$BENCH_OUT" --out "$OUT/bench.json" \
      --metrics "$WORK/metrics-d.json" || failed+=("failed requests")
  fi
  if [[ ${#failed[@]} -gt 0 || ${#results[@]} -eq 0 ]]; then
    fail "bench: ${failed[*]:-no result}"
  else
    local levels fraction
    levels="$(for r in "${results[@]}"; do r="${r##*/bench-c}"; printf '%s,' "${r%.json}"; done)"
    fraction="$("$PY_ANY" - "$WORK/metrics-d.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["single_stream_vs_roofline"] or {}
rate, f = r.get("decode_tok_s"), r.get("fraction")
print(f"c=1 decode {rate} tok/s" + (f" = {f:.0%} of the HBM roofline" if f is not None else ""))
PY
)"
    pass "c=${levels%,}: every request completed; $fraction"
  fi
}

stage_e() {
  await_checkpoint 0.6b "$CKPT_06B" || return
  local rc
  within "$TL" debug streams --model "$CKPT_06B" --device "$DEVICE" --dtype f32 --attention-backend auto \
    --streams "$STREAMS" --max-tokens "$STREAM_TOKENS" | tee "$WORK/streams.txt"
  rc=$?
  if [[ $rc -eq 0 ]]; then
    pass "$(grep -m1 -o '[0-9]* identical to their solo runs' "$WORK/streams.txt") (f32, default backend)"
  elif timed_out "$rc"; then
    fail "debug streams did not finish within the stage's time"
  else
    fail "$(grep -m1 -o '[0-9]* differ' "$WORK/streams.txt" || echo "exit $rc") of $STREAMS streams differ from their solo runs"
  fi
}

stage_g() {
  await_checkpoint 0.6b "$CKPT_06B" || return
  local spec='{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_min":2,"prompt_lookup_max":4}'
  local method c n rc failed=() extra=()
  for method in off ngram; do
    extra=()
    [[ $method == ngram ]] && extra=(--speculative-config "$spec")
    if ! start_user_serve "$CKPT_06B" "$OUT/serve-g-$method.log" "${extra[@]}"; then
      stop_serve
      fail "serve ($method) did not answer /health (see serve-g-$method.log)"
      return
    fi
    for c in $SPEC_LEVELS; do
      n=$((c == 1 ? 4 : 2 * c))
      log "== g: speculation $method, concurrency $c, $n prompts"
      within "$TL" bench --base-url "http://127.0.0.1:$PORT/v1" --api-key "$API_KEY" --model "$SERVED" \
        --tokenizer "$CKPT_06B" --input-len "$SPEC_IN" --output-len "$SPEC_OUT" --num-prompts "$n" \
        --max-concurrency "$c" --no-progress --result-file "$WORK/spec-$method-c$c.json" >/dev/null
      rc=$?
      if [[ $rc -ne 0 ]]; then
        failed+=("$method c=$c (exit $rc)")
        timed_out "$rc" && break
      fi
    done
    stop_serve
  done
  if [[ ${#failed[@]} -gt 0 ]]; then
    fail "bench: ${failed[*]}"
    return
  fi
  local verdict
  # The rehearsal's tiny runs on a shared CPU are too short to judge speed by.
  verdict="$("$PY_ANY" - "$WORK" "$SMOKE" $SPEC_LEVELS <<'PY'
import json, pathlib, sys
work, smoke, levels = pathlib.Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]
parts, slower = [], []
for c in levels:
    off = json.loads((work / f"spec-off-c{c}.json").read_text())
    on = json.loads((work / f"spec-ngram-c{c}.json").read_text())
    ratio = on["output_throughput"] / off["output_throughput"]
    accept = on.get("spec_decode_acceptance_rate")
    parts.append(f"c={c} {off['output_throughput']:.0f} -> {on['output_throughput']:.0f} tok/s "
                 f"({ratio:.2f}x, acceptance {'-' if accept is None else f'{accept:.0f}%'})")
    if c != "1" and ratio < 0.95 and not smoke:
        slower.append(f"c={c}")
print(("SLOWER at " + ", ".join(slower) + ": " if slower else "") + "; ".join(parts))
PY
)"
  if [[ $verdict == SLOWER* ]]; then
    fail "ngram $verdict"
  else
    pass "ngram: $verdict"
  fi
}

stage_h() {
  has_module "$PY" numpy || { fail "no numpy for the checkpoint and the comparison"; return; }
  log "== h: waiting for the MoE checkpoint written in the background"
  while [[ ! -s "$WORK/moe.rc" ]] && ((SECONDS < STAGE_END)); do sleep 1; done
  if [[ "$(cat "$WORK/moe.rc" 2>/dev/null)" != 0 ]]; then
    tail -5 "$WORK/moe.log" 2>/dev/null
    fail "the MoE checkpoint was not written $([[ -s "$WORK/moe.rc" ]] && echo "(exit $(cat "$WORK/moe.rc"))" || echo "within the stage's time")"
    return
  fi
  local prompts="$WORK/prompts-h.json" failed=() report="$WORK/compare-h.txt"
  "$PY_ANY" -c 'import json, random, sys
random.seed(9)
json.dump([[random.randrange(151643) for _ in range(n)] for n in (96, 80)], open(sys.argv[1], "w"))' "$prompts"
  logits() { # name device dtype: $WORK/h-name.npy
    log "== h: MoE logits $1"
    within "$TL" debug logits --model "$CKPT_MOE" --device "$2" --dtype "$3" --prompts "$prompts" \
      --prefill 32 --chunk 16 --out "$WORK/h-$1" || failed+=("logits $1")
  }
  logits f32-cpu cpu f32
  logits bf16-cpu cpu bf16
  logits bf16-dev "$DEVICE" bf16
  rm_logits() { rm -f "$WORK"/h-*.npy; }
  if [[ ${#failed[@]} -gt 0 ]]; then
    rm_logits
    fail "debug logits failed: ${failed[*]}"
    return
  fi
  if ! within "$PY" "$HERE/compare_devices.py" --label "moe bf16:" --max-ratio 2.0 \
      --dense "$WORK/h-f32-cpu.npy" --cpu "$WORK/h-bf16-cpu.npy" --got "$DEVICE=$WORK/h-bf16-dev.npy" |
      tee "$report"; then
    rm_logits
    fail "MoE logits on $DEVICE differ from the CPU's: $(tail -1 "$report")"
    return
  fi
  rm_logits
  # Served: the user's command on the MoE checkpoint, the device it reports, a short bench.
  local served="not served: no time left" rc
  if (($(left) > 20)); then
    if start_user_serve "$CKPT_MOE" "$WORK/serve-h.log" && check_served_device "$WORK/device-h.json"; then
      within "$TL" bench --base-url "http://127.0.0.1:$PORT/v1" --api-key "$API_KEY" --model "$SERVED" \
        --tokenizer "$CKPT_MOE" --input-len 128 --output-len 32 --num-prompts 4 --max-concurrency 2 \
        --no-progress --result-file "$WORK/bench-h.json" >/dev/null
      rc=$?
      if [[ $rc -ne 0 ]]; then
        stop_serve
        fail "MoE logits agree ($(tail -1 "$report")), but its bench failed (exit $rc; see serve-h.log)"
        return
      fi
      if ! served="$("$PY_ANY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
if d["failed"] or d["completed"] != d["num_prompts"]:
    print("{} of {} requests failed".format(d["failed"], d["num_prompts"]))
    sys.exit(1)
print("served on {}: {} requests, {:.0f} out tok/s at c=2".format(sys.argv[2], d["completed"], d["output_throughput"]))' \
        "$WORK/bench-h.json" "$(served_device "$WORK/device-h.json")")"; then
        stop_serve
        fail "MoE logits agree ($(tail -1 "$report")), but serving it: ${served:-no bench report}"
        return
      fi
    else
      stop_serve
      fail "MoE logits agree ($(tail -1 "$report")), but the server did not come up on $WANT_DEVICE"
      return
    fi
    stop_serve
  fi
  pass "MoE logits on $DEVICE within the CPU's bf16 noise: $(tail -1 "$report"); $served"
}

stage_i() {
  has_module "$PY" numpy || { fail "no numpy for the comparison"; return; }
  local prompts="$WORK/prompts-i.json" failed=() report="$WORK/compare-i.txt"
  "$PY_ANY" -c 'import json, random, sys
random.seed(10)
json.dump([[random.randrange(151643) for _ in range(n)] for n in (96, 72)], open(sys.argv[1], "w"))' "$prompts"
  logits() { # name device dtype backend: $WORK/i-name.npy
    log "== i: logits with an fp8 KV cache, $1"
    within "$TL" debug logits --model "$CKPT_06B" --device "$2" --dtype "$3" --attention-backend "$4" \
      --kv-cache-dtype fp8 --prompts "$prompts" --prefill 32 --chunk 16 --out "$WORK/i-$1" ||
      failed+=("logits $1")
  }
  logits f32-cpu cpu f32 auto
  logits bf16-cpu cpu bf16 generic
  logits bf16-dev "$DEVICE" bf16 generic
  local got=("$DEVICE=$WORK/i-bf16-dev.npy")
  # The own kernels run on a GPU only (the CPU device refuses `--attention-backend cuda`).
  if [[ $SMOKE -eq 0 ]]; then
    logits bf16-dev-cuda "$DEVICE" bf16 cuda
    got+=("$DEVICE-cuda=$WORK/i-bf16-dev-cuda.npy")
  fi
  if [[ ${#failed[@]} -gt 0 ]]; then
    rm -f "$WORK"/i-*.npy
    fail "debug logits failed: ${failed[*]}"
    return
  fi
  local ok=1
  within "$PY" "$HERE/compare_devices.py" --label "fp8 kv:" --max-ratio 2.0 \
    --dense "$WORK/i-f32-cpu.npy" --cpu "$WORK/i-bf16-cpu.npy" --got "${got[@]}" |
    tee "$report" || ok=0
  rm -f "$WORK"/i-*.npy
  if [[ $ok -eq 0 ]]; then
    fail "logits with an fp8 KV cache on $DEVICE differ from the CPU's: $(tail -1 "$report")"
    return
  fi
  pass "fp8 KV cache on $DEVICE within the CPU's bf16 noise: $(tail -1 "$report")"
}

stage_f() {
  await_checkpoint 0.6b "$CKPT_06B" || return
  has_module "$PY" numpy || { fail "no numpy for the comparison"; return; }
  local prompts="$WORK/prompts-f.json" gguf="$GGUF" rc failed=() report
  "$PY_ANY" -c 'import json, random, sys
random.seed(8)
json.dump([[random.randrange(151643) for _ in range(n)] for n in (96, 80)], open(sys.argv[1], "w"))' "$prompts"
  log "== f: waiting for the $GGUF_TYPE GGUF file written in the background"
  while [[ ! -s "$WORK/gguf.rc" ]] && ((SECONDS < STAGE_END)); do sleep 1; done
  if [[ "$(cat "$WORK/gguf.rc" 2>/dev/null)" != 0 ]]; then
    tail -5 "$WORK/gguf.log" 2>/dev/null
    fail "debug gguf did not write the $GGUF_TYPE file $([[ -s "$WORK/gguf.rc" ]] && echo "(exit $(cat "$WORK/gguf.rc"))" || echo "within the stage's time")"
    return
  fi
  logits() { # name device model [load flags]: $WORK/f-name.npy
    log "== f: logits $1"
    within "$TL" debug logits --model "$3" --device "$2" --prompts "$prompts" --prefill 32 --chunk 16 \
      --out "$WORK/f-$1" "${@:4}" || failed+=("logits $1")
  }
  logits dense cpu "$CKPT_06B"
  logits gguf-cpu cpu "$gguf"
  logits gguf-dev "$DEVICE" "$gguf"
  logits fp8-cpu cpu "$CKPT_06B" --quantization fp8
  logits fp8-dev "$DEVICE" "$CKPT_06B" --quantization fp8
  report="$WORK/compare-f.txt"
  : >"$report"
  if [[ ${#failed[@]} -eq 0 ]]; then
    within "$PY" "$HERE/compare_devices.py" --label "$GGUF_TYPE:" --dense "$WORK/f-dense.npy" \
      --cpu "$WORK/f-gguf-cpu.npy" --got "$DEVICE=$WORK/f-gguf-dev.npy" | tee -a "$report" ||
      failed+=("$GGUF_TYPE logits")
    within "$PY" "$HERE/compare_devices.py" --label "fp8:" --dense "$WORK/f-dense.npy" \
      --cpu "$WORK/f-fp8-cpu.npy" --got "$DEVICE=$WORK/f-fp8-dev.npy" | tee -a "$report" ||
      failed+=("fp8 logits")
  fi
  rm -f "$WORK"/f-*.npy
  local decode="not measured"
  if [[ -n "$SERVE_DEAD" ]]; then
    decode="not measured: $SERVE_DEAD"
  elif [[ ${#failed[@]} -eq 0 ]] && (($(left) > 40)) && start_user_serve "$gguf" "$OUT/serve-f.log"; then
    within "$TL" bench --base-url "http://127.0.0.1:$PORT/v1" --api-key "$API_KEY" --model "$SERVED" \
      --tokenizer "$CKPT_06B" --input-len 128 --output-len "$((BENCH_OUT < 64 ? BENCH_OUT : 64))" \
      --num-prompts 3 --max-concurrency 1 --no-progress --result-file "$WORK/bench-f.json"
    rc=$?
    stop_serve
    if [[ $rc -eq 0 ]]; then
      decode="$("$PY_ANY" -c 'import json, sys; t = json.load(open(sys.argv[1])).get("mean_tpot_ms")
print("%.1f tok/s" % (1000 / t) if t else "no TPOT")' "$WORK/bench-f.json")"
    else
      failed+=("bench of the GGUF file (exit $rc)")
    fi
  fi
  "$PY_ANY" - "$report" "$WORK/metrics-f.json" "$GGUF_TYPE" "$decode" <<'PY'
import json, sys
report, out, kind, decode = sys.argv[1:]
json.dump({"gguf_type": kind, "comparison": [l.strip() for l in open(report) if l.strip()],
           "gguf_decode_c1": decode}, open(out, "w"), indent=2)
PY
  if [[ ${#failed[@]} -gt 0 ]]; then
    fail "${failed[*]} (table in first-contact.log)"
  else
    pass "$GGUF_TYPE GGUF and fp8 logits on $DEVICE within the quantization's noise of the CPU kernels; GGUF decode c=1 $decode"
  fi
}

declare -A NAME=([a]=serve [b]=logits [c]=kernels [d]=bench [e]=streams [f]=quant [g]=spec [h]=moe [i]=kv-fp8)
# SETUP_BUDGET + a..e + RESERVE = 478 s: within 8 minutes (tests/clients/test_first_contact.py).
declare -A BUDGET=([a]=120 [b]=80 [c]=60 [d]=110 [e]=40 [f]=120 [g]=90 [h]=90 [i]=60)
# The least time worth starting a stage with; f's is what it really needs on a GPU (five
# `debug logits` runs, a serve and a short bench).
declare -A NEEDS=([a]=45 [b]=40 [c]=20 [d]=60 [e]=25 [f]=100 [g]=60 [h]=45 [i]=30)
[[ $SMOKE -eq 1 ]] && NEEDS[f]=30 NEEDS[g]=20 NEEDS[h]=15 NEEDS[i]=10
# On the still-warm machine the GGUF file, the checkpoints and the JIT cache are there already.
[[ $FOLLOW_UP -eq 1 ]] && NEEDS[f]=50

run_stage() { # id
  local id="$1" started=$SECONDS available
  available=$((DEADLINE - RESERVE - SECONDS))
  if [[ $SETUP_OK -eq 0 ]]; then
    record "$id" "${NAME[$id]}" SKIP 0 "${BUDGET[$id]}" "not started: the setup failed"
    return
  fi
  if [[ $id == d && -n "$SERVE_DEAD" ]]; then
    record "$id" "${NAME[$id]}" SKIP 0 "${BUDGET[$id]}" "not started: $SERVE_DEAD (see serve-a.log)"
    return
  fi
  if [[ $id == b && -z "$PY_TORCH" ]]; then
    if [[ $SMOKE -eq 1 ]]; then
      record "$id" "${NAME[$id]}" SKIP 0 "${BUDGET[$id]}" "not started: needs torch and transformers, not installed here"
    else
      record "$id" "${NAME[$id]}" FAIL 0 "${BUDGET[$id]}" "no python with torch, transformers and numpy on the machine"
    fi
    return
  fi
  if ((available < NEEDS[$id])); then
    record "$id" "${NAME[$id]}" SKIP 0 "${BUDGET[$id]}" "not started: ${available}s left before the deadline"
    return
  fi
  STAGE_END=$((SECONDS + (BUDGET[$id] < available ? BUDGET[$id] : available)))
  STATUS="" DETAIL=""
  log "=== stage $id (${NAME[$id]}): budget $((STAGE_END - SECONDS))s"
  "stage_$id"
  stop_serve
  if [[ -z "$STATUS" ]]; then
    fail "the stage ended without a verdict"
  fi
  if ((SECONDS > STAGE_END + 15)); then
    STATUS=FAIL DETAIL="over its budget by $((SECONDS - STAGE_END))s; $DETAIL"
  fi
  log "=== stage $id (${NAME[$id]}): $STATUS in $((SECONDS - started))s: $DETAIL"
  record "$id" "${NAME[$id]}" "$STATUS" "$((SECONDS - started))" "${BUDGET[$id]}" "$DETAIL"
}

STAGE_END=$((SECONDS + SETUP_BUDGET))
if setup; then
  if ((SECONDS > SETUP_BUDGET)); then
    log "setup: over its budget of ${SETUP_BUDGET}s (${SECONDS}s)"
  fi
  record setup setup PASS "$SECONDS" "$SETUP_BUDGET" "$(grep -m1 -o 'all ok in .*' "$WORK/preflight.txt" | sed 's/^/pre-flight /')"
else
  SETUP_OK=0
  [[ -f "$WORK/meta.json" ]] || write_meta
  record setup setup FAIL "$SECONDS" "$SETUP_BUDGET" "${SETUP_WHY:-the setup failed}"
  log "setup failed: every stage is reported as not started"
fi
for id in $ALL_STAGES; do
  case " $STAGES " in *" $id "*) run_stage "$id" ;; esac
done

"${PY_ANY:-python3}" - "$WORK/meta.json" "$SECONDS" <<'PY' 2>/dev/null
import json, sys
m = json.load(open(sys.argv[1]))
m["wall_s"] = int(sys.argv[2])
json.dump(m, open(sys.argv[1], "w"), indent=2)
PY
write_summary
echo
log "== summary ($SECONDS s): $OUT/summary.json"
column -t -s $'\t' "$WORK/stages.tsv" 2>/dev/null || cat "$WORK/stages.tsv"
verdict="$("${PY_ANY:-python3}" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["verdict"], d.get("other_stages", {}))' "$OUT/summary.json" 2>/dev/null)"
log "verdict ($VERDICT_STAGES): ${verdict:-unknown}"
cp "$OUT/summary.json" "$WORK/last-summary.json" 2>/dev/null
# Exit 0 iff no stage of the verdict failed (stage f is reported beside it).
! awk -F'\t' -v stages=" $VERDICT_STAGES " 'index(stages, " " $1 " ") && $3 == "FAIL" {found = 1} END {exit !found}' "$WORK/stages.tsv"
