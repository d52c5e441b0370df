#!/usr/bin/env bash
# Thin wrapper: `bash profiling/ncu.sh [ARGS]` = `python -m profiling.ncu [ARGS]` from the
# repository root, whatever the current directory. PYTHON picks the interpreter.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" -m profiling.ncu "$@"
