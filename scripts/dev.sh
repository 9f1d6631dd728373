#!/usr/bin/env bash
# The README's two set-up commands, runnable on a fresh Debian / Ubuntu / Raspberry Pi OS machine
# that has Rust (rustup) but nothing else:
#   scripts/dev.sh demo   classify the bundled sample photos with the bundled model
#   scripts/dev.sh test   run the test suite
# Both first install the system packages the build needs (C compiler; cmake and nasm build
# libjpeg-turbo, the JPEG decoder the cloud's Python code uses) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential pkg-config cmake nasm)

install_system_packages() {
  local missing=()
  command -v cc >/dev/null || missing+=(build-essential)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  command -v cmake >/dev/null || missing+=(cmake)
  command -v nasm >/dev/null || missing+=(nasm)
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
    cargo run --release -- predict --model models/demo models/samples
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
