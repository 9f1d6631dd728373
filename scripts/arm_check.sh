#!/usr/bin/env bash
# Checks that cvedge computes the same results on the Raspberry Pi's ARM cores as on x86_64,
# under qemu-user: aarch64 (64-bit Pi OS) as a Pi 4 (Cortex-A72) and a Pi 3 / Zero 2 (Cortex-A53),
# and armv7 (32-bit Pi OS) as a Cortex-A7. Correctness only: qemu timings mean nothing.
#
#   scripts/arm_check.sh            (from anywhere; Debian/Ubuntu x86_64 host, root or sudo)
#
# What it does:
#   1. builds the release binaries with cross/build.sh (which installs the cross gcc, libc and
#      qemu-user-static and the Rust targets when missing) into $CVEDGE_TARGET_ROOT/aarch64 and
#      .../armv7 (default target/); SKIP_BUILD=1 reuses binaries that exist;
#   2. runs `cvedge predict --engine tract --json` under qemu per CPU (aarch64 cortex-a72 and
#      cortex-a53, armv7 cortex-a7) and with the x86 binary target/release/cvedge (not rebuilt:
#      build it first) on models/demo, models/demo-fp16, every models/conformance/* and
#      target/peers/cvedge-int8 (if present; ARM_CHECK_INT8 names another), over
#      models/samples/*.jpg plus tests/data/gray.jpg and exif_rotated.jpg, and compares every
#      probability: max |dp| <= 1e-4, same top tag;
#   3. onnxruntime on aarch64: installs the arm64 libonnxruntime.so.1 into .../aarch64/ort
#      (scripts/install_onnxruntime.sh) and compares `--engine onnxruntime` on models/demo
#      (fp32, <= 1e-4) and target/peers/cvedge-int8 (int8, <= 0.03, same top tag) with the x86
#      binary's onnxruntime output, per CPU. Under plain qemu-user onnxruntime's CPU detection
#      (cpuinfo) reads the host's x86 /proc/cpuinfo and crashes; cvedge must turn that into one
#      sentence (SKIP row) and `--engine auto` must still answer via tract. Then onnxruntime runs
#      again with the matching Raspberry Pi /proc/cpuinfo (Pi 4 for the A72, Pi 3 for the A53)
#      bind-mounted: on the A53 (ARMv8.0) it must pick kernels the core has, never SIGILL. These
#      runs happen in a private user namespace (unshare --user --mount) with aarch64 registered
#      in its own binfmt_misc (kernel >= 6.7), so cvedge's probe child (an aarch64 exec) runs
#      under qemu too; nothing is registered outside that namespace;
#   4. armv7: `--engine onnxruntime` must be refused in one sentence (there is no 32-bit ARM
#      onnxruntime) and `--engine auto` must answer via tract, equal to x86;
#   5. the model-fidelity and pipeline test files of the Rust suite (ARM_CHECK_TESTS, default
#      exports preprocess engines cli) built for aarch64 (`cargo test --release --target ...`)
#      and run under qemu, once per aarch64 CPU, in the same namespace (tests spawn the aarch64
#      cvedge binary). ARM_CHECK_TESTS=none skips this step (it adds a ~15 min build).
#
# Exits non-zero on any mismatch or failed test, or if an ARM binary fails on a tract run.
# onnxruntime rows that cannot run at all under qemu are reported as SKIP (not a mismatch) unless
# ARM_CHECK_STRICT_ORT=1. Environment: ARM_CHECK_CPUS (default "cortex-a72 cortex-a53"),
# ARM_CHECK_ARMV7=0 leaves armv7 out, X86_CVEDGE=path picks another x86 binary,
# X86_ONNXRUNTIME=path the x86 library (default: what the x86 binary finds itself).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_ROOT="${CVEDGE_TARGET_ROOT:-$ROOT/target}"
TRIPLE=aarch64-unknown-linux-gnu
ARM_TARGET_DIR="$TARGET_ROOT/aarch64"
ARM="$ARM_TARGET_DIR/$TRIPLE/release/cvedge"
ARMV7="$TARGET_ROOT/armv7/armv7-unknown-linux-gnueabihf/release/cvedge"
X86="${X86_CVEDGE:-$ROOT/target/release/cvedge}"
ORT_PREFIX="$ARM_TARGET_DIR/ort"
ARM_ORT="$ORT_PREFIX/lib/cvedge/libonnxruntime.so.1"
OUT="$ARM_TARGET_DIR/arm_check"
SYSROOT=/usr/aarch64-linux-gnu
SYSROOT_V7=/usr/arm-linux-gnueabihf
TOL_FP=1e-4
TOL_INT8=0.03
read -r -a CPUS <<< "${ARM_CHECK_CPUS:-cortex-a72 cortex-a53}"
DO_V7="${ARM_CHECK_ARMV7:-1}"
read -r -a TESTS <<< "${ARM_CHECK_TESTS:-exports preprocess engines cli}"
[ "${TESTS[*]}" = none ] && TESTS=()
T0=$(date +%s)

say() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - T0 ))" >&2; }
die() { echo "arm_check: error: $*" >&2; exit 2; }
short() { case "$1" in cortex-a72) echo a72 ;; cortex-a53) echo a53 ;; cortex-a7) echo a7 ;; *) echo "$1" ;; esac; }

# ---------------------------------------------------------------- 1. build (tools come with it)
[ -x "$X86" ] || die "$X86 is missing: build the x86 binary first (cargo build --release) or set X86_CVEDGE"
ARCHES=(aarch64); [ "$DO_V7" = 1 ] && ARCHES+=(armv7)
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -x "$ARM" ] || { [ "$DO_V7" = 1 ] && [ ! -x "$ARMV7" ]; }; then
  say "cross/build.sh ${ARCHES[*]}"
  CVEDGE_TARGET_ROOT="$TARGET_ROOT" cross/build.sh "${ARCHES[@]}"
fi
# shellcheck source=../cross/aarch64.env
. "$ROOT/cross/aarch64.env"
# shellcheck source=../cross/armv7.env
. "$ROOT/cross/armv7.env"
[ "$(od -An -tx1 -j18 -N2 "$ARM" | tr -d ' ')" = b700 ] || die "$ARM is not an aarch64 executable"
"$CVEDGE_QEMU" -cpu cortex-a72 -L "$SYSROOT" "$ARM" --version >&2
if [ "$DO_V7" = 1 ]; then
  [ "$(od -An -tx1 -j18 -N2 "$ARMV7" | tr -d ' ')" = 2800 ] || die "$ARMV7 is not a 32-bit ARM executable"
  "$CVEDGE_QEMU_ARM" -cpu cortex-a7 -L "$SYSROOT_V7" "$ARMV7" --version >&2
fi

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

# x86_tract NAME MODEL: the x86 reference, once per model.
x86_tract() {
  local x="$OUT/$1.tract.x86.jsonl"
  [ -s "$x" ] || "$X86" predict --engine tract --json --model "$2" "${IMAGES[@]}" > "$x"
}

# run_tract NAME MODEL LABEL CMD...: the ARM binary (CMD: qemu, cpu, sysroot, binary) on MODEL.
run_tract() {
  local name="$1" model="$2" label="$3"; shift 3
  local y="$OUT/$name.tract-$label.arm.jsonl"
  echo "tract $label: $name" >&2
  x86_tract "$name" "$model"
  if ! CVEDGE_ONNXRUNTIME="$ARM_ORT" "$@" predict --engine tract --json --model "$model" "${IMAGES[@]}" > "$y" 2> "$y.err"; then
    row "$name" "tract/$label" FAIL "$(tail -1 "$y.err")"; FAILED=1; return
  fi
  compare "$name" "tract/$label" "$TOL_FP" "$OUT/$name.tract.x86.jsonl" "$y" || FAILED=1
}

MODELS=(demo=models/demo demo-fp16=models/demo-fp16)
for d in models/conformance/*/; do d="${d%/}"; MODELS+=("${d##*/}=$d"); done
INT8="${ARM_CHECK_INT8:-$TARGET_ROOT/peers/cvedge-int8}"
if [ -d "$INT8" ]; then MODELS+=("cvedge-int8=$INT8"); else note "no $INT8 (made by scripts/bench_peers.py): int8 rows skipped"; fi

# ---------------------------------------------------------------- 2. tract
for cpu in "${CPUS[@]}"; do
  say "tract: x86 vs aarch64 under qemu ($cpu)"
  for m in "${MODELS[@]}"; do run_tract "${m%%=*}" "${m#*=}" "aarch64-$(short "$cpu")" "$CVEDGE_QEMU" -cpu "$cpu" -L "$SYSROOT" "$ARM"; done
done
if [ "$DO_V7" = 1 ]; then
  say "tract: x86 vs armv7 under qemu-arm (cortex-a7)"
  for m in "${MODELS[@]}"; do run_tract "${m%%=*}" "${m#*=}" armv7-a7 "$CVEDGE_QEMU_ARM" -cpu cortex-a7 -L "$SYSROOT_V7" "$ARMV7"; done
fi

# ---------------------------------------------------------------- 3. onnxruntime (aarch64)
say "onnxruntime: arm64 library into $ORT_PREFIX"
CVEDGE_ORT_ARCH=arm64 scripts/install_onnxruntime.sh "$ORT_PREFIX" >&2

# pi_cpuinfo FILE PART MODEL REVISION: a Raspberry Pi's /proc/cpuinfo (64-bit Pi OS), 4 cores.
pi_cpuinfo() {
  {
    for i in 0 1 2 3; do
      printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
      printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 4\n\n' "$2"
    done
    printf 'Hardware\t: BCM2835\nRevision\t: %s\nSerial\t\t: 10000000c0ffee00\nModel\t\t: %s\n' "$4" "$3"
  } > "$1"
}
pi_cpuinfo "$OUT/cpuinfo-cortex-a72" 0xd08 "Raspberry Pi 4 Model B Rev 1.1" c03111
pi_cpuinfo "$OUT/cpuinfo-cortex-a53" 0xd03 "Raspberry Pi 3 Model B Rev 1.2" a02082
pi_of() { case "$1" in cortex-a72) echo pi4 ;; cortex-a53) echo pi3 ;; *) echo pi ;; esac; }

# cvedge tries the onnxruntime library in a child process first (`cvedge probe-onnxruntime`).
# Under qemu-user that child is an aarch64 exec: without a binfmt_misc entry for aarch64 it
# cannot start (qemu emulates posix_spawn's vfork as a fork, so the parent only sees exit 127,
# "the test process failed"). Kernels >= 6.7 give each user namespace its own binfmt_misc, so
# the qemu runs for onnxruntime/auto (and the test suite, whose tests spawn cvedge) go into a
# private user+mount namespace with aarch64 registered there (nothing changes outside it);
# QEMU_CPU / QEMU_LD_PREFIX carry -cpu / -L to children. In "pi" mode $CPUINFO is bind-mounted
# over /proc/cpuinfo in the same namespace.
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
export BINFMT_CONF
CPUINFO="$OUT/cpuinfo-cortex-a72"; export CPUINFO
if [ -f "$BINFMT_CONF" ] && NS_BINFMT=1 unshare --user --map-root-user --mount --propagation private \
     sh -c "$NS_SCRIPT" sh pi env QEMU_CPU=cortex-a72 QEMU_LD_PREFIX="$SYSROOT" "$ARM" --version >/dev/null 2>&1; then
  NS_BINFMT=1
  NS=(env NS_BINFMT=1 unshare --user --map-root-user --mount --propagation private sh -c "$NS_SCRIPT" sh)
  CAN_PI=1
  note "onnxruntime/auto/tests run in a private user namespace with aarch64 in its own binfmt_misc (cvedge's child processes run under qemu too)"
else
  NS_BINFMT=0
  note "no private binfmt_misc (needs unshare --user and a kernel >= 6.7): cvedge's probe child cannot start under qemu-user, so onnxruntime runs fail with 'the test process failed' (exit 127 in the child), not because of onnxruntime"
  NS=(env NS_BINFMT=0 unshare --mount --propagation private sh -c "$NS_SCRIPT" sh)
  CAN_PI=0
  NS_BINFMT=0 unshare --mount --propagation private sh -c "$NS_SCRIPT" sh pi grep -q 0xd08 /proc/cpuinfo 2>/dev/null && CAN_PI=1
fi
[ "$CAN_PI" = 1 ] || note "cannot mount over /proc/cpuinfo here (unshare -m refused): no Raspberry Pi cpuinfo runs"

# arm_predict CPU MODE ENGINE MODEL OUTFILE: MODE plain = qemu's /proc/cpuinfo (the host's x86
# one); pi = the CPU's Raspberry Pi cpuinfo over /proc/cpuinfo.
arm_predict() {
  local cpu="$1" mode="$2" engine="$3" model="$4" out="$5" run
  if [ "$NS_BINFMT" = 1 ]; then
    run=(env QEMU_CPU="$cpu" QEMU_LD_PREFIX="$SYSROOT" "$ARM")
  else
    run=("$CVEDGE_QEMU" -cpu "$cpu" -L "$SYSROOT" "$ARM")
  fi
  local cmd=(env CVEDGE_ONNXRUNTIME="$ARM_ORT" "${run[@]}" predict --engine "$engine" --json --model "$model" "${IMAGES[@]}")
  if [ "$mode" = plain ] && [ "$NS_BINFMT" = 0 ]; then
    "${cmd[@]}" > "$out" 2> "$out.err"
  else
    CPUINFO="$OUT/cpuinfo-$cpu" "${NS[@]}" "$mode" "${cmd[@]}" > "$out" 2> "$out.err"
  fi
}

X86_ORT_ENV=(); [ -n "${X86_ONNXRUNTIME:-}" ] && X86_ORT_ENV=(CVEDGE_ONNXRUNTIME="$X86_ONNXRUNTIME")
# run_ort CPU NAME MODEL TOL
run_ort() {
  local cpu="$1" name="$2" model="$3" tol="$4" x="$OUT/$2.ort.x86.jsonl" y mode st label
  echo "onnxruntime $cpu: $name" >&2
  if [ ! -s "$x" ] && ! env "${X86_ORT_ENV[@]}" "$X86" predict --engine onnxruntime --json --model "$model" "${IMAGES[@]}" > "$x" 2> "$x.err"; then
    row "$name" "onnxruntime" SKIP "x86 onnxruntime unavailable: $(tail -1 "$x.err")"
    [ "${ARM_CHECK_STRICT_ORT:-0}" = 1 ] && FAILED=1
    return
  fi
  for mode in plain pi; do
    [ "$mode" = pi ] && [ "$CAN_PI" = 0 ] && continue
    label="$(short "$cpu")-$mode-cpuinfo"; [ "$mode" = pi ] && label="$(short "$cpu")-$(pi_of "$cpu")-cpuinfo"
    y="$OUT/$name.ort-$cpu-$mode.arm.jsonl"
    st=0; arm_predict "$cpu" "$mode" onnxruntime "$model" "$y" || st=$?
    if [ "$st" != 0 ]; then
      note "onnxruntime $name, $cpu, $mode cpuinfo: exit $st: $(grep -v '^\s*$' "$y.err" | tail -1)"
      # A crash must come out as cvedge's sentence, never as a signal of cvedge itself.
      if [ "$st" -gt 128 ] || ! grep -q '^error: the onnxruntime engine: ' "$y.err"; then
        row "$name" "onnxruntime/$label" FAIL "exit $st without cvedge's one-sentence refusal"; FAILED=1; continue
      fi
      row "$name" "onnxruntime/$label" SKIP "exit $st: $(grep -v '^\s*$' "$y.err" | tail -1 | cut -c1-160)"
      [ "${ARM_CHECK_STRICT_ORT:-0}" = 1 ] && FAILED=1
      continue
    fi
    compare "$name" "onnxruntime/$label" "$tol" "$x" "$y" || FAILED=1
  done
}

for cpu in "${CPUS[@]}"; do
  say "onnxruntime: x86 vs aarch64 under qemu ($cpu)"
  run_ort "$cpu" demo models/demo "$TOL_FP"
  [ -d "$INT8" ] && run_ort "$cpu" cvedge-int8 "$INT8" "$TOL_INT8"
  # --engine auto under plain qemu must answer whatever onnxruntime does (falling back to tract
  # if the library cannot start): compared with x86 tract.
  y="$OUT/demo.auto-$cpu-plain.arm.jsonl"; st=0
  arm_predict "$cpu" plain auto models/demo "$y" || st=$?
  if [ "$st" != 0 ]; then
    row demo "auto/$(short "$cpu")-plain-cpuinfo" FAIL "exit $st: $(grep -v '^\s*$' "$y.err" | tail -1 | cut -c1-160)"; FAILED=1
  else
    compare demo "auto/$(short "$cpu")-plain-cpuinfo" "$TOL_FP" "$OUT/demo.tract.x86.jsonl" "$y" || FAILED=1
    [ -s "$y.err" ] && note "auto under plain qemu ($cpu) said: $(grep -v '^\s*$' "$y.err" | tr '\n' ' ' | cut -c1-300)"
  fi
done

# ---------------------------------------------------------------- 4. armv7: onnxruntime refused
if [ "$DO_V7" = 1 ]; then
  say "armv7: onnxruntime refused, auto via tract"
  V7=("$CVEDGE_QEMU_ARM" -cpu cortex-a7 -L "$SYSROOT_V7" "$ARMV7")
  y="$OUT/demo.ort-armv7.arm.jsonl"; st=0
  "${V7[@]}" predict --engine onnxruntime --json --model models/demo "${IMAGES[@]}" > "$y" 2> "$y.err" || st=$?
  said="$(grep -v '^\s*$' "$y.err" | tail -1)"
  note "armv7 --engine onnxruntime: exit $st: $said"
  if [ "$st" = 1 ] && [ "$(grep -c '^error: ' "$y.err")" = 1 ] && grep -q 'no onnxruntime library for 32-bit ARM' "$y.err" && ! [ -s "$y" ]; then
    row demo onnxruntime/armv7-a7 ok "refused: $(echo "$said" | cut -c1-120)"
  else
    row demo onnxruntime/armv7-a7 FAIL "expected one 'no onnxruntime library for 32-bit ARM' error, exit 1; got exit $st: $said"; FAILED=1
  fi
  y="$OUT/demo.auto-armv7.arm.jsonl"; st=0
  "${V7[@]}" predict --engine auto --json --model models/demo "${IMAGES[@]}" > "$y" 2> "$y.err" || st=$?
  if [ "$st" != 0 ]; then
    row demo auto/armv7-a7 FAIL "exit $st: $(grep -v '^\s*$' "$y.err" | tail -1 | cut -c1-160)"; FAILED=1
  else
    compare demo auto/armv7-a7 "$TOL_FP" "$OUT/demo.tract.x86.jsonl" "$y" || FAILED=1
  fi
  st=0; inspect="$("${V7[@]}" inspect --engine auto --model models/demo 2>&1)" || st=$?
  note "armv7 inspect --engine auto: $(echo "$inspect" | grep -E '^ *(engine|notes):' | tr -s ' ' | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- 5. the Rust test subset
if [ ${#TESTS[@]} -gt 0 ]; then
  say "cargo test --release --target $TRIPLE: ${TESTS[*]} (build)"
  args=(); for t in "${TESTS[@]}"; do args+=(--test "$t"); done
  # The test binaries' paths, built once; each CPU then runs them under qemu.
  CARGO_TARGET_DIR="$ARM_TARGET_DIR" cargo test --release --locked --target "$TRIPLE" --no-run "${args[@]}" \
    --message-format=json 2> "$OUT/tests-build.log" \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"] + "=" + m["executable"])' > "$OUT/tests.txt" \
    || { tail -20 "$OUT/tests-build.log" >&2; die "building the aarch64 tests failed ($OUT/tests-build.log)"; }
  for cpu in "${CPUS[@]}"; do
    while IFS='=' read -r name exe; do
      say "test $name under qemu $cpu"
      log="$OUT/test-$name-$cpu.log"; t=$(date +%s); st=0
      # As cargo runs them: from the repository, with the aarch64 onnxruntime, the Pi cpuinfo
      # (onnxruntime's CPU detection needs it), the fixtures, the cross C compiler for the test
      # that builds a crashing stand-in library, and 10x the daemon tests' patience; the cvedge they spawn is the aarch64 one
      # cargo built beside them, run by binfmt under the same QEMU_CPU.
      CPUINFO="$OUT/cpuinfo-$cpu" CVEDGE_ONNXRUNTIME="$ARM_ORT" CVEDGE_REQUIRE_PEERS="${CVEDGE_REQUIRE_PEERS:-0}" \
        CVEDGE_TEST_CC="$CC_aarch64_unknown_linux_gnu" CVEDGE_TEST_SLOWDOWN=10 \
        CVEDGE_FIXTURES="${CVEDGE_FIXTURES:-$ROOT/../shared/fixtures/exports}" \
        "${NS[@]}" "$([ "$CAN_PI" = 1 ] && echo pi || echo plain)" \
        env QEMU_CPU="$cpu" QEMU_LD_PREFIX="$SYSROOT" $([ "$NS_BINFMT" = 1 ] || echo "$CVEDGE_QEMU") "$exe" --test-threads=2 > "$log" 2>&1 || st=$?
      result="$(grep -E '^test result:' "$log" | tail -1)"
      if [ "$st" = 0 ]; then status=ok; else status=FAIL; FAILED=1; fi
      row "$name" "cargo-test/aarch64-$(short "$cpu")" "$status" "$(( $(date +%s) - t )) s; ${result:-no result line, exit $st}"
      [ "$status" = ok ] || grep -E '^(test .* FAILED|---- |thread .* panicked)' "$log" | head -5 | sed 's/^/    /' >&2
    done < "$OUT/tests.txt"
  done
fi

# ---------------------------------------------------------------- summary
say "summary (x86_64 $X86 vs ARM under qemu-user)"
{
  printf 'model\tengine/cpu\tmax|dp|\ttol\ttop tag match\timages\tresult\tdetail\n'
  cat "$ROWS"
} | column -t -s $'\t'
[ -s "$NOTES" ] && { echo; echo "notes:"; sed 's/^/  /' "$NOTES"; }
echo "outputs: $OUT; took $(( $(date +%s) - T0 )) s"
if [ "$FAILED" != 0 ]; then echo "arm_check: FAILED" >&2; exit 1; fi
echo "arm_check: all rows agree"
