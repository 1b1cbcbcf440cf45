#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (a crate outside the workspace) for a bounded time
# each: docs/security.md, "Fuzzing". Not part of scripts/test.sh (CI time); what the
# targets found is replayed on stable by tests/fuzz_regressions.rs.
#
#   scripts/fuzz.sh                      # every target, 60 s each
#   scripts/fuzz.sh --seconds 300        # longer
#   scripts/fuzz.sh --target sdp         # one target (repeatable)
#   scripts/fuzz.sh --jobs 2             # libFuzzer workers per target
#
# Installs cargo-fuzz (and the nightly toolchain it needs) when missing. Each target starts
# from fuzz/seeds/<target> and fuzz/regressions/<target>, and keeps what it learns in
# fuzz/corpus/<target> (ignored by git). Exits non-zero on the first crash, timeout or
# out-of-memory, printing the reproducer's path and how to replay it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=60
jobs=1
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --target) targets+=("$2"); shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "fuzz: unknown argument $1 (--seconds N, --target NAME, --jobs N)" >&2; exit 2 ;;
    esac
done

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# No sanitizer (safe Rust: panics and overflow checks are what we look for, and the build
# is twice as fast), debug assertions and overflow checks on.
flags=(--sanitizer none --debug-assertions)
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

echo "fuzz: building ${targets[*]}" >&2
(cd fuzz && timeout 3600 cargo +nightly fuzz build "${flags[@]}")

status=0
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/regressions/$target"
    log="fuzz/corpus/$target.log"
    echo "fuzz: $target for ${seconds} s (log: $log)" >&2
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a huge allocation.
    parallel=()
    if [ "$jobs" -gt 1 ]; then
        parallel=(-jobs="$jobs" -workers="$jobs")
    fi
    set +e
    (cd fuzz && timeout $((seconds + 120)) cargo +nightly fuzz run "${flags[@]}" "$target" \
        "corpus/$target" "seeds/$target" "regressions/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 "${parallel[@]}") >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^#[0-9]+ +DONE' "$log" >&2 || true
    if [ $rc -ne 0 ]; then
        status=1
        echo "fuzz: $target FAILED (exit $rc); last lines of $log:" >&2
        tail -n 30 "$log" >&2
        artifact=$(grep -oE 'fuzz/artifacts/[^ ]+|artifacts/[^ ]+' "$log" | tail -n 1 || true)
        if [ -n "$artifact" ]; then
            echo "fuzz: reproducer: fuzz/${artifact#fuzz/}" >&2
            echo "fuzz: replay: (cd fuzz && cargo +nightly fuzz run ${flags[*]} $target ${artifact#fuzz/})" >&2
            echo "fuzz: once fixed, copy it to fuzz/regressions/$target/ (tests/fuzz_regressions.rs replays it)" >&2
        fi
        break
    fi
done
exit $status
