#!/usr/bin/env bash
# The "test" command: installs the build and test tools that are missing, builds
# voxline (release), fetches the default voice once into models/ (or $VOXLINE_MODELS),
# then runs every test in the workspace. Extra arguments go to `cargo test`
# (e.g. scripts/test.sh piper_parity, or scripts/test.sh -- --nocapture).
# Exits with cargo test's status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --test
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

echo "test: building (release)" >&2
cargo build --release
bin="${CARGO_TARGET_DIR:-target}/release/voxline"

echo "test: making sure the default voice is present" >&2
"$bin" fetch-voice

echo "test: cargo test --release --workspace $*" >&2
exec cargo test --release --workspace "$@"
