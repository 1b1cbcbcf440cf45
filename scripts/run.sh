#!/usr/bin/env bash
# The "run" command: installs what is missing, builds voxline (release), and runs it.
#
#   scripts/run.sh                      says a hello line into ./hello.wav (fetches the default voice once)
#   scripts/run.sh say "Hi there" -o hi.wav [--voice V] [--rate 8000] [--mulaw] ...
#   scripts/run.sh voices | fetch-voice | bench ...   (any voxline subcommand; see --help)
#
# Arguments are voxline's own and keep the current folder (relative paths work as usual).
# Voices live in $VOXLINE_MODELS, which this script sets to <repo>/models unless it is set.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bash "$root/scripts/setup.sh" --quiet
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

# cargo's progress goes to stderr; stdout stays free for `say ... -o -`.
cargo build --release --manifest-path "$root/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$root/target}/release/voxline"
export VOXLINE_MODELS="${VOXLINE_MODELS:-$root/models}"

if [ "$#" -eq 0 ]; then
    "$bin" say "Hello! This is voxline, speaking with the default voice." -o hello.wav
    echo "run: wrote $(pwd)/hello.wav (play it with: aplay hello.wav, or: play hello.wav)" >&2
    echo "run: more: scripts/run.sh say \"your text\" -o out.wav; scripts/run.sh --help" >&2
    exit 0
fi
exec "$bin" "$@"
