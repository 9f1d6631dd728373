#!/bin/sh
# Installs the cvedge .deb for this machine's architecture (Raspberry Pi OS 64-bit: arm64, 32-bit:
# armhf; Debian/Ubuntu x86_64: amd64) from the release assets, with apt so dependencies resolve:
#
#   curl -fsSL https://github.com/cvedge/cvedge/releases/latest/download/install.sh | sudo sh
#
# CVEDGE_RELEASES names another place holding the assets (VERSION and cvedge_<ver>_<arch>.deb,
# as scripts/package.sh writes them; a file:// URL works); CVEDGE_VERSION pins a version.
# Nothing is compiled on the Pi. Re-running upgrades and keeps /etc/cvedge and /var/lib/cvedge.
set -eu
BASE="${CVEDGE_RELEASES:-https://github.com/cvedge/cvedge/releases/latest/download}"

fail() { echo "cvedge install: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run it as root: curl -fsSL .../install.sh | sudo sh"
command -v dpkg >/dev/null && command -v apt-get >/dev/null || fail "this installs a .deb (Debian, Raspberry Pi OS, Ubuntu); elsewhere unpack the cvedge-<version>-<target>.tar.gz release asset and follow its INSTALL"
command -v curl >/dev/null || fail "curl is missing; install it first: apt-get install curl"

# dpkg's architecture, not uname's: a 32-bit Pi OS on a 64-bit kernel needs the armhf package.
arch="$(dpkg --print-architecture)"
case "$arch" in
  arm64|amd64) ;;
  armhf)
    # Raspberry Pi OS's armhf also runs on ARMv6 (Pi 1, Zero, Zero W), which the armv7 build cannot.
    case "$(uname -m)" in armv6*) fail "this is an ARMv6 Pi (Pi 1 / Zero / Zero W): cvedge needs a Pi 2 or newer (ARMv7 or 64-bit)";; esac ;;
  *) fail "no cvedge package for '$arch'; there are arm64, armhf and amd64 packages (or build from source with cargo build --release)";;
esac

version="${CVEDGE_VERSION:-$(curl -fsSL "$BASE/VERSION" | tr -d '[:space:]')}" || fail "cannot read $BASE/VERSION; check the network or set CVEDGE_RELEASES"
[ -n "$version" ] || fail "$BASE/VERSION is empty; set CVEDGE_VERSION"
deb="cvedge_${version}_${arch}.deb"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "cvedge install: $deb from $BASE" >&2
curl -fsSL -o "$tmp/$deb" "$BASE/$deb" || fail "cannot download $BASE/$deb; check the network, or that release $version has a $arch package"
# apt, not dpkg -i, so a missing dependency is installed instead of leaving a half-configured package.
chmod 0644 "$tmp/$deb"; chmod 0755 "$tmp"
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$tmp/$deb"
echo "cvedge $version installed. Next: cvedge sources (the camera), edit /etc/cvedge/cvedge.toml (model, [mqtt] url), systemctl enable --now cvedge" >&2
