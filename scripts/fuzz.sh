#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for a bounded time (issue 8; see fuzz/README.md).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default 60 s, every target
#
# Each target starts from its committed corpus (fuzz/corpus/<target>) plus the generated seeds
# (fuzz/seeds, from fuzz/make_seeds.py) and grows a scratch corpus in fuzz/artifacts/work/<target>.
# A crash, hang (-timeout) or memory blow-up (-rss_limit_mb) is minimised into
# fuzz/artifacts/<target>/ and makes the script exit non-zero. With CVEDGE_FUZZ_MERGE=1 the
# scratch corpus is then minimised into the committed one (libFuzzer -merge, as `cargo fuzz cmin`);
# reproducers of fixed crashes (corpus/<target>/regression-*) are always kept.
#
# Needs the nightly toolchain (cargo-fuzz is installed when missing). The build is optimised, with
# debug assertions and overflow checks, and without a sanitizer: cvedge and its Rust dependencies
# are memory-safe outside a little unsafe code, the one C dependency (libjpeg-turbo, built by
# cmake) would not be instrumented by -Zsanitizer anyway, and ASan would double the memory of
# tract-sized inputs on a 2-core machine. Crashes, hangs and OOMs are what this looks for.
set -euo pipefail

seconds=${1:-60}
shift || true
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo/fuzz"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(export_zip model_bytes image_decode mjpeg_stream config http_request)
fi
target_dir=${CVEDGE_FUZZ_TARGET_DIR:-$repo/fuzz/target}
# 4 codegen units (cargo-fuzz's default is 1): the first build, tract included, takes ~25 min on 2
# cores instead of far longer, for a few percent of execution speed. Changing any of these flags
# rebuilds everything.
build_flags=(-O -a -s none --codegen-units 4 --target-dir "$target_dir")

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi
if [ ! -d seeds ] && python3 -c 'import PIL' 2>/dev/null; then
    python3 make_seeds.py
fi
cargo +nightly fuzz build "${build_flags[@]}"
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"

failed=0
summary=()
for target in "${targets[@]}"; do
    work=artifacts/work/$target
    crashes=artifacts/$target
    mkdir -p "$work" "$crashes" "corpus/$target"
    log=artifacts/$target.log
    dirs=("$work" "corpus/$target")
    [ -d "seeds/$target" ] && dirs+=("seeds/$target")
    before=$(ls "$crashes" | wc -l)
    status=0
    "$bin_dir/$target" "${dirs[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -artifact_prefix="$crashes/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -oE '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || echo ?)
    found=$(( $(ls "$crashes" | wc -l) - before ))
    for artifact in $(ls -t "$crashes" | head -n "$found"); do
        case $artifact in minimized-*) continue ;; esac
        "$bin_dir/$target" -minimize_crash=1 -runs=2000 -timeout=10 -rss_limit_mb=2048 \
            -exact_artifact_path="$crashes/minimized-$artifact" "$crashes/$artifact" >>"$log" 2>&1 || true
    done
    line="$target: $runs runs in ${seconds}s, cov $cov, crashes $found (exit $status)"
    summary+=("$line")
    echo "$line"
    if [ "$status" -ne 0 ] || [ "$found" -gt 0 ]; then
        failed=1
        echo "  see fuzz/$log and fuzz/$crashes/" >&2
    fi
    if [ "${CVEDGE_FUZZ_MERGE:-0}" = 1 ]; then
        merged=artifacts/merged/$target
        rm -rf "$merged" && mkdir -p "$merged"
        # Edges only (no hit counters): for export_zip, 840 files (0.6 MB) instead of 2160 (2.6 MB).
        "$bin_dir/$target" -merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=2048 "$merged" "corpus/$target" "$work" >>"$log" 2>&1
        # Reproducers of fixed crashes stay whether or not they still add coverage.
        cp corpus/"$target"/regression-* "$merged"/ 2>/dev/null || true
        rm -rf "corpus/$target" && mv "$merged" "corpus/$target"
    fi
done
printf '%s\n' "${summary[@]}" >artifacts/summary.txt
exit $failed
