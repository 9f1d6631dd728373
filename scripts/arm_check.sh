#!/usr/bin/env bash
# Checks that cvedge computes the same results on 64-bit ARM (Raspberry Pi 4/5: Cortex-A72/A76,
# aarch64-unknown-linux-gnu) as on x86_64. Correctness only: qemu timings mean nothing.
#
#   scripts/arm_check.sh            (from anywhere; Debian/Ubuntu x86_64 host, root or sudo)
#
# What it does:
#   1. installs, only if missing, gcc/g++-aarch64-linux-gnu, libc6-dev-arm64-cross and
#      qemu-user-static, and the Rust target aarch64-unknown-linux-gnu;
#   2. cross-compiles `cargo build --release --target aarch64-unknown-linux-gnu` into
#      target/aarch64 (settings in cross/aarch64.env; the main target dir is left alone);
#   3. runs `cvedge predict --engine tract --json` under `qemu-aarch64 -cpu cortex-a72` and with
#      the x86 binary target/release/cvedge (not rebuilt: build it first) on models/demo,
#      models/demo-fp16, every models/conformance/* and target/peers/cvedge-int8 (if present),
#      over models/samples/*.jpg plus tests/data/gray.jpg and exif_rotated.jpg, and compares every
#      probability: max |dp| <= 1e-4 and the same top tag;
#   4. onnxruntime: installs the arm64 libonnxruntime.so.1 into target/aarch64/ort
#      (scripts/install_onnxruntime.sh) and compares `--engine onnxruntime` on models/demo
#      (fp32, <= 1e-4) and target/peers/cvedge-int8 (int8, <= 0.03, same top tag) with the x86
#      binary's onnxruntime output. Under plain qemu-user onnxruntime's CPU detection (cpuinfo)
#      reads the host's x86 /proc/cpuinfo; the script records what cvedge does then (and checks
#      that `--engine auto` still answers, via tract), then reruns onnxruntime with a Raspberry
#      Pi 4 /proc/cpuinfo bind-mounted in a private mount namespace. These runs happen in a
#      private user namespace (unshare --user --mount) with aarch64 registered in its own
#      binfmt_misc (kernel >= 6.7), so cvedge's probe child (`cvedge probe-onnxruntime`, an
#      aarch64 exec) runs under qemu too; nothing is registered outside that namespace.
#
# Exits non-zero on any mismatch, or if the aarch64 binary fails on a tract run. onnxruntime
# rows that cannot run at all under qemu are reported as SKIP (not a mismatch) unless
# ARM_CHECK_STRICT_ORT=1. Environment: SKIP_BUILD=1 reuses the aarch64 binary as it is;
# X86_CVEDGE=path picks another x86 binary; X86_ONNXRUNTIME=path the x86 library (default: what
# target/release/cvedge finds itself).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TRIPLE=aarch64-unknown-linux-gnu
ARM_TARGET_DIR="$ROOT/target/aarch64"
ARM="$ARM_TARGET_DIR/$TRIPLE/release/cvedge"
X86="${X86_CVEDGE:-$ROOT/target/release/cvedge}"
ORT_PREFIX="$ARM_TARGET_DIR/ort"
ARM_ORT="$ORT_PREFIX/lib/cvedge/libonnxruntime.so.1"
OUT="$ARM_TARGET_DIR/arm_check"
SYSROOT=/usr/aarch64-linux-gnu
TOL_FP=1e-4
TOL_INT8=0.03

say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "arm_check: error: $*" >&2; exit 2; }

# ---------------------------------------------------------------- 1. tools (only when missing)
say "tools"
need=()
for pkg in gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
command -v qemu-aarch64 >/dev/null || command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  echo "installing: ${need[*]}" >&2
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}"
fi
rustup target list --installed | grep -qx "$TRIPLE" || rustup target add "$TRIPLE"
# shellcheck source=../cross/aarch64.env
. "$ROOT/cross/aarch64.env"
QEMU=("$CVEDGE_QEMU" -cpu cortex-a72 -L "$SYSROOT")
[ -x "$X86" ] || die "$X86 is missing: build the x86 binary first (cargo build --release)"

# ---------------------------------------------------------------- 2. build
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -x "$ARM" ]; then
  say "cargo build --release --target $TRIPLE (CARGO_TARGET_DIR=$ARM_TARGET_DIR)"
  CARGO_TARGET_DIR="$ARM_TARGET_DIR" cargo build --release --locked --target "$TRIPLE"
fi
file -L "$ARM" 2>/dev/null | grep -q 'ARM aarch64' || [ "$(od -An -tx1 -j18 -N2 "$ARM" | tr -d ' ')" = b700 ] \
  || die "$ARM is not an aarch64 executable"
"${QEMU[@]}" "$ARM" --version >&2

rm -rf "$OUT"; mkdir -p "$OUT"
IMAGES=(models/samples/*.jpg tests/data/gray.jpg tests/data/exif_rotated.jpg)
FAILED=0
ROWS="$OUT/rows.tsv"; : > "$ROWS"
NOTES="$OUT/notes.txt"; : > "$NOTES"
note() { echo "$*" | tee -a "$NOTES" >&2; }

# compare NAME ENGINE TOL X86_JSONL ARM_JSONL: appends a row; returns 1 on a mismatch.
compare() {
  python3 - "$@" >> "$ROWS" <<'PY'
import json, sys
name, engine, tol, a_path, b_path = sys.argv[1:6]
tol = float(tol)
def load(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            o = json.loads(line)
            out[o["image"]] = {p["tagName"]: p["probability"] for p in o["predictions"]}
    return out
a, b = load(a_path), load(b_path)
problems, worst, top_ok = [], 0.0, True
if not a or set(a) != set(b):
    problems.append(f"images differ: x86 {sorted(a)} arm {sorted(b)}")
for img in sorted(set(a) & set(b)):
    pa, pb = a[img], b[img]
    if set(pa) != set(pb):
        problems.append(f"{img}: tags differ"); continue
    worst = max([worst] + [abs(pa[t] - pb[t]) for t in pa])
    if max(pa, key=pa.get) != max(pb, key=pb.get):
        top_ok = False
        problems.append(f"{img}: top tag x86 {max(pa, key=pa.get)} arm {max(pb, key=pb.get)}")
ok = not problems and worst <= tol
print("\t".join([name, engine, f"{worst:.3g}", f"{tol:g}", "yes" if top_ok else "NO",
                 f"{len(set(a) & set(b))}", "ok" if ok else "MISMATCH", "; ".join(problems)]))
sys.exit(0 if ok else 1)
PY
}

# row NAME ENGINE STATUS DETAIL: a row without numbers (SKIP / FAIL).
row() { printf '%s\t%s\t-\t-\t-\t-\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$ROWS"; }

# run_tract NAME MODEL
run_tract() {
  local name="$1" model="$2" x="$OUT/$1.tract.x86.jsonl" y="$OUT/$1.tract.arm.jsonl"
  echo "tract: $name" >&2
  "$X86" predict --engine tract --json --model "$model" "${IMAGES[@]}" > "$x"
  if ! CVEDGE_ONNXRUNTIME="$ARM_ORT" "${QEMU[@]}" "$ARM" predict --engine tract --json --model "$model" "${IMAGES[@]}" > "$y" 2> "$y.err"; then
    row "$name" tract FAIL "$(tail -1 "$y.err")"; FAILED=1; return
  fi
  compare "$name" tract "$TOL_FP" "$x" "$y" || FAILED=1
}

# ---------------------------------------------------------------- 3. tract
say "tract: x86 vs aarch64 under qemu (cortex-a72)"
run_tract demo models/demo
run_tract demo-fp16 models/demo-fp16
for d in models/conformance/*/; do
  d="${d%/}"; run_tract "${d##*/}" "$d"
done
INT8=target/peers/cvedge-int8
if [ -d "$INT8" ]; then run_tract cvedge-int8 "$INT8"; else note "no $INT8 (made by scripts/bench_peers.py): int8 rows skipped"; fi

# ---------------------------------------------------------------- 4. onnxruntime
say "onnxruntime: arm64 library into $ORT_PREFIX"
CVEDGE_ORT_ARCH=arm64 scripts/install_onnxruntime.sh "$ORT_PREFIX" >&2

# A Raspberry Pi 4 (64-bit Raspberry Pi OS) /proc/cpuinfo.
CPUINFO="$OUT/rpi4_cpuinfo"
{
  for i in 0 1 2 3; do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done
  printf 'Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 10000000c0ffee00\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n'
} > "$CPUINFO"

# cvedge tries the onnxruntime library in a child process first (`cvedge probe-onnxruntime`).
# Under qemu-user that child is an aarch64 exec: without a binfmt_misc entry for aarch64 it
# cannot start (qemu emulates posix_spawn's vfork as a fork, so the parent only sees exit 127,
# "the test process failed"). Kernels >= 6.7 give each user namespace its own binfmt_misc, so
# the qemu runs for onnxruntime/auto go into a private user+mount namespace with aarch64
# registered there (nothing changes outside it); QEMU_CPU / QEMU_LD_PREFIX carry -cpu / -L to
# the child. In rpi4 mode $CPUINFO is bind-mounted over /proc/cpuinfo in the same namespace.
BINFMT_CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
# shellcheck disable=SC2016
NS_SCRIPT='set -e
mode="$1"; shift
if [ "$NS_BINFMT" = 1 ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  grep -v "^#" "$BINFMT_CONF" > /proc/sys/fs/binfmt_misc/register
fi
[ "$mode" = plain ] || mount --bind "$CPUINFO" /proc/cpuinfo
exec "$@"'
export BINFMT_CONF CPUINFO
if [ -f "$BINFMT_CONF" ] && NS_BINFMT=1 unshare --user --map-root-user --mount --propagation private \
     sh -c "$NS_SCRIPT" sh rpi4 env QEMU_CPU=cortex-a72 QEMU_LD_PREFIX="$SYSROOT" "$ARM" --version >/dev/null 2>&1; then
  NS_BINFMT=1
  NS=(env NS_BINFMT=1 unshare --user --map-root-user --mount --propagation private sh -c "$NS_SCRIPT" sh)
  CAN_RPI4=1
  note "onnxruntime/auto runs: private user namespace with aarch64 in its own binfmt_misc (cvedge's probe child runs under qemu too)"
else
  NS_BINFMT=0
  note "no private binfmt_misc (needs unshare --user and a kernel >= 6.7): cvedge's probe child cannot start under qemu-user, so onnxruntime runs fail with 'the test process failed' (exit 127 in the child), not because of onnxruntime"
  NS=(env NS_BINFMT=0 unshare --mount --propagation private sh -c "$NS_SCRIPT" sh)
  CAN_RPI4=0
  NS_BINFMT=0 unshare --mount --propagation private sh -c "$NS_SCRIPT" sh rpi4 grep -q 0xd08 /proc/cpuinfo 2>/dev/null && CAN_RPI4=1
fi
[ "$CAN_RPI4" = 1 ] || note "cannot mount over /proc/cpuinfo here (unshare -m refused): no Raspberry Pi cpuinfo runs"

# arm_predict MODE ENGINE MODEL OUTFILE: MODE plain = qemu's /proc/cpuinfo (the host's x86 one);
# rpi4 = $CPUINFO over /proc/cpuinfo.
arm_predict() {
  local mode="$1" engine="$2" model="$3" out="$4" run
  if [ "$NS_BINFMT" = 1 ]; then
    run=(env QEMU_CPU=cortex-a72 QEMU_LD_PREFIX="$SYSROOT" "$ARM")
  else
    run=("${QEMU[@]}" "$ARM")
  fi
  local cmd=(env CVEDGE_ONNXRUNTIME="$ARM_ORT" "${run[@]}" predict --engine "$engine" --json --model "$model" "${IMAGES[@]}")
  if [ "$mode" = plain ] && [ "$NS_BINFMT" = 0 ]; then
    "${cmd[@]}" > "$out" 2> "$out.err"
  else
    "${NS[@]}" "$mode" "${cmd[@]}" > "$out" 2> "$out.err"
  fi
}

X86_ORT_ENV=(); [ -n "${X86_ONNXRUNTIME:-}" ] && X86_ORT_ENV=(CVEDGE_ONNXRUNTIME="$X86_ONNXRUNTIME")
# run_ort NAME MODEL TOL
run_ort() {
  local name="$1" model="$2" tol="$3" x="$OUT/$1.ort.x86.jsonl" y mode st
  echo "onnxruntime: $name" >&2
  if ! env "${X86_ORT_ENV[@]}" "$X86" predict --engine onnxruntime --json --model "$model" "${IMAGES[@]}" > "$x" 2> "$x.err"; then
    row "$name" "onnxruntime" SKIP "x86 onnxruntime unavailable: $(tail -1 "$x.err")"
    [ "${ARM_CHECK_STRICT_ORT:-0}" = 1 ] && FAILED=1
    return
  fi
  for mode in plain rpi4; do
    [ "$mode" = rpi4 ] && [ "$CAN_RPI4" = 0 ] && continue
    y="$OUT/$name.ort-$mode.arm.jsonl"
    st=0; arm_predict "$mode" onnxruntime "$model" "$y" || st=$?
    if [ "$st" != 0 ]; then
      note "onnxruntime $name, qemu $mode cpuinfo: exit $st: $(grep -v '^\s*$' "$y.err" | tail -1)"
      row "$name" "onnxruntime/$mode-cpuinfo" SKIP "exit $st: $(grep -v '^\s*$' "$y.err" | tail -1 | cut -c1-160)"
      [ "${ARM_CHECK_STRICT_ORT:-0}" = 1 ] && FAILED=1
      continue
    fi
    compare "$name" "onnxruntime/$mode-cpuinfo" "$tol" "$x" "$y" || FAILED=1
  done
}

say "onnxruntime: x86 vs aarch64 under qemu"
run_ort demo models/demo "$TOL_FP"
[ -d "$INT8" ] && run_ort cvedge-int8 "$INT8" "$TOL_INT8"

# --engine auto under plain qemu must answer whatever onnxruntime does (falling back to tract if
# the library cannot start): compared with x86 tract.
say "auto under plain qemu"
y="$OUT/demo.auto-plain.arm.jsonl"; st=0
arm_predict plain auto models/demo "$y" || st=$?
if [ "$st" != 0 ]; then
  row demo "auto/plain-cpuinfo" FAIL "exit $st: $(grep -v '^\s*$' "$y.err" | tail -1 | cut -c1-160)"; FAILED=1
else
  compare demo "auto/plain-cpuinfo" "$TOL_FP" "$OUT/demo.tract.x86.jsonl" "$y" || FAILED=1
  [ -s "$y.err" ] && note "auto under plain qemu said: $(grep -v '^\s*$' "$y.err" | tr '\n' ' ' | cut -c1-300)"
fi

# ---------------------------------------------------------------- summary
say "summary (x86_64 target/release/cvedge vs aarch64 under $CVEDGE_QEMU -cpu cortex-a72)"
{
  printf 'model\tengine\tmax|dp|\ttol\ttop tag match\timages\tresult\tdetail\n'
  cat "$ROWS"
} | column -t -s $'\t'
[ -s "$NOTES" ] && { echo; echo "notes:"; sed 's/^/  /' "$NOTES"; }
echo "outputs: $OUT"
if [ "$FAILED" != 0 ]; then echo "arm_check: FAILED" >&2; exit 1; fi
echo "arm_check: all rows agree"
