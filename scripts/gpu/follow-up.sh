#!/usr/bin/env bash
# The second command for the still-warm GPU machine, right after first-contact.sh (at most 85 s):
# stage f alone, on the checkpoints, GGUF file and JIT cache the first run left in
# $TEALIGHT_GPU_WORK. Its verdict is stage f's.
#
#   run(command="bash scripts/gpu/follow-up.sh", carry=["target/gpu", ".whl"], timeout_s=150)
#
# STAGES="f" by default; another stage the first run could not fit can be named instead
# (STAGES="d" for the bench, DEADLINE raised to what the machine has left).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$HERE/first-contact.sh" --follow-up "$@"
