#!/usr/bin/env bash
# Release binaries for the Raspberry Pi, built on an x86_64 Debian/Ubuntu host (never on the Pi):
#
#   cross/build.sh                    aarch64 and armv7
#   cross/build.sh aarch64            64-bit Pi OS only (or: armv7)
#   cross/build.sh --zig 2.31 aarch64 linked by zig against glibc 2.31 (Pi OS bullseye)
#
# Installs what is missing (Debian's cross gcc and libc, qemu-user-static, the rustup targets;
# with --zig: PyPI's ziglang and cargo-zigbuild wheels), then `cargo build --release --locked` per
# target with the settings in cross/<arch>.env, into $CVEDGE_TARGET_ROOT/<arch> (default:
# target/aarch64, target/armv7; with --zig: target/<arch>-zig). Prints each binary's path, size
# and glibc floor (the newest GLIBC_ symbol version it needs: the oldest Pi OS it runs on).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_ROOT="${CVEDGE_TARGET_ROOT:-$ROOT/target}"

usage() { echo "usage: cross/build.sh [--zig GLIBC_VERSION] [aarch64] [armv7]" >&2; exit 2; }
ZIG_GLIBC=""
ARCHES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --zig) [ $# -ge 2 ] || usage; ZIG_GLIBC="$2"; shift 2 ;;
    aarch64|armv7) ARCHES+=("$1"); shift ;;
    *) echo "cross/build.sh: unknown argument '$1'; give aarch64 and/or armv7 (and optionally --zig 2.31)" >&2; usage ;;
  esac
done
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(aarch64 armv7)

triple_of() { case "$1" in aarch64) echo aarch64-unknown-linux-gnu ;; armv7) echo armv7-unknown-linux-gnueabihf ;; esac; }
packages_of() {
  case "$1" in
    aarch64) echo gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross ;;
    armv7) echo gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf libc6-dev-armhf-cross ;;
  esac
}

# glibc_floor BINARY: the highest GLIBC_x.y its dynamic symbols ask for.
glibc_floor() {
  local objdump=objdump
  command -v "$objdump" >/dev/null || { echo "?"; return; }
  "$objdump" -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -u -V | tail -1
}

# ---------------------------------------------------------------- tools, only what is missing
need=()
for arch in "${ARCHES[@]}"; do
  for pkg in $(packages_of "$arch"); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
  done
done
# The build itself: cmake (libjpeg-turbo), clang/libclang (nokhwa's V4L2 bindings), binutils
# (objdump for the glibc floor).
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang libclang-dev)
command -v objdump >/dev/null || need+=(binutils)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v qemu-aarch64-static >/dev/null || command -v qemu-aarch64 >/dev/null || need+=(qemu-user-static)
if [ ${#need[@]} -gt 0 ]; then
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  echo "installing: ${need[*]}" >&2
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}"
fi
for arch in "${ARCHES[@]}"; do
  t="$(triple_of "$arch")"
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done
if [ -n "$ZIG_GLIBC" ]; then
  # zig links against a glibc stub of any version, so the binary asks for nothing newer. Both
  # come as PyPI wheels (prebuilt; cargo-zigbuild finds zig through python3 -m ziglang).
  python3 -m ziglang version >/dev/null 2>&1 || PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet ziglang
  if ! command -v cargo-zigbuild >/dev/null; then
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet cargo-zigbuild
    command -v pyenv >/dev/null && pyenv rehash
  fi
fi

# ---------------------------------------------------------------- build
SUMMARY=()
for arch in "${ARCHES[@]}"; do
  t="$(triple_of "$arch")"
  dir="$TARGET_ROOT/$arch"
  [ -n "$ZIG_GLIBC" ] && dir="$TARGET_ROOT/$arch-zig"
  start=$(date +%s)
  (
    # shellcheck disable=SC1090
    . "$ROOT/cross/$arch.env"
    if [ -n "$ZIG_GLIBC" ]; then
      # cargo-zigbuild sets the linker and CC_<triple> to zig wrappers; the .env's gcc settings
      # would override them, so only the bindgen/pkg-config ones are kept.
      u="${t//-/_}"; U="$(echo "$u" | tr '[:lower:]' '[:upper:]')"
      unset "CARGO_TARGET_${U}_LINKER" "CC_$u" "CXX_$u" "AR_$u"
      echo "cargo zigbuild --release --target $t.$ZIG_GLIBC (CARGO_TARGET_DIR=$dir)" >&2
      CARGO_TARGET_DIR="$dir" cargo zigbuild --release --locked --target "$t.$ZIG_GLIBC"
    else
      echo "cargo build --release --target $t (CARGO_TARGET_DIR=$dir)" >&2
      CARGO_TARGET_DIR="$dir" cargo build --release --locked --target "$t"
    fi
  )
  bin="$dir/$t/release/cvedge"
  SUMMARY+=("$(printf '%-32s %5s MB  glibc floor %-11s built in %ss' "$bin" "$(( $(stat -c %s "$bin") / 1000000 ))" "$(glibc_floor "$bin")" "$(( $(date +%s) - start ))")")
done
printf '%s\n' "${SUMMARY[@]}"
