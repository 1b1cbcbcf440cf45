#!/usr/bin/env bash
# The "run" command: installs what is missing, builds voxline (release), and runs it.
#
#   scripts/run.sh                      starts the server: SIP on udp/5060, HTTP API on :8080 (fetches the default voice once)
#   scripts/run.sh serve --sip 0.0.0.0:5080 --greeting "Thanks for calling."   (docs/sip.md)
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
    echo "run: starting voxline serve (call sip:anything@<this host>:5060; API on http://localhost:8080/calls)" >&2
    echo "run: logs with VOXLINE_LOG=info; other commands: scripts/run.sh say \"text\" -o out.wav, scripts/run.sh --help" >&2
    export VOXLINE_LOG="${VOXLINE_LOG:-info}"
    exec "$bin" serve
fi
exec "$bin" "$@"
