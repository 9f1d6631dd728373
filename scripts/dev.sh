#!/usr/bin/env bash
# The README's two set-up commands, runnable on a fresh Debian / Ubuntu / Raspberry Pi OS machine
# that has Rust (rustup) but nothing else:
#   scripts/dev.sh demo   the daemon's embedded default: the bundled model classifies the bundled
#                         photos, printing each prediction and publishing it to a local mosquitto
#   scripts/dev.sh test   run the test suite
# Both first install what is missing: the C toolchain, cmake and nasm (they build libjpeg-turbo,
# the JPEG decoder the cloud's Python code uses), mosquitto and ffmpeg (real broker and camera
# streams for the tests), clang (bindings for V4L2 cameras).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian installs mosquitto in /usr/sbin, which a normal user's PATH lacks.
export PATH="$PATH:/usr/sbin:/sbin"

PACKAGES=(build-essential pkg-config cmake nasm clang libclang-dev mosquitto mosquitto-clients ffmpeg)

install_system_packages() {
  local missing=()
  command -v cc >/dev/null || missing+=(build-essential)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  command -v cmake >/dev/null || missing+=(cmake)
  command -v nasm >/dev/null || missing+=(nasm)
  command -v clang >/dev/null || missing+=(clang libclang-dev)
  command -v mosquitto >/dev/null || missing+=(mosquitto)
  command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if ! command -v apt-get >/dev/null; then
    echo "error: missing ${missing[*]}; install them with your package manager (need: ${PACKAGES[*]})" >&2
    exit 1
  fi
  echo "installing ${missing[*]} (needed to build cvedge)" >&2
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
}

case "${1:-}" in
  demo)
    install_system_packages
    cargo build --release
    # A broker on localhost:1883 unless one is there already (watch it with
    # `mosquitto_sub -t 'cvedge/#' -v`); stopped again when the demo ends.
    if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
      printf 'listener 1883 127.0.0.1\nallow_anonymous true\n' > "${TMPDIR:-/tmp}/cvedge-demo-mosquitto.conf"
      # Its own session, so Ctrl-C reaches only cvedge, which then says `stopped` to a live broker.
      setsid mosquitto -c "${TMPDIR:-/tmp}/cvedge-demo-mosquitto.conf" &
      broker=$!
      trap 'kill $broker 2>/dev/null' EXIT
      sleep 0.5
    fi
    trap ':' INT  # let cvedge handle Ctrl-C and stop cleanly; this script then stops the broker
    echo "cvedge run: predictions below and on mqtt://127.0.0.1:1883 (cvedge/#); Ctrl-C stops" >&2
    target/release/cvedge run
    ;;
  test)
    install_system_packages
    cargo test
    ;;
  *)
    echo "usage: scripts/dev.sh demo|test" >&2
    exit 2
    ;;
esac
