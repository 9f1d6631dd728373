"""Per-image latency of `cvedge predict` against onnxruntime, split into decode / preprocess /
inference, for the bundled demo model (models/demo), measured in one run.

What it measures
----------------
* cvedge: `target/release/cvedge predict --model models/demo --timings IMG...` with every image
  repeated (warm-up + N times) in ONE process, so model loading is excluded.  The per-image
  `decode / preprocess / inference` lines cvedge prints to stderr are parsed (cvedge prints them
  with 0.1 ms resolution).  decode = file read + JPEG decode (libjpeg-turbo) + EXIF orientation;
  preprocess = resize/crop + colour order + tensor; inference = tract backbone + head.
* onnxruntime (Python): the same models/demo/model.onnx with the identical preprocessing
  (scripts/reference_outputs.py: Pillow decode + EXIF transpose, cv2 INTER_LINEAR resize/crop,
  BGR float32 NCHW), timed per stage with time.perf_counter(): decode = load_rgb(path),
  preprocess = the rest of preprocess(), inference = session.run().  Run twice: with
  intra_op_num_threads=1 (like tract, which is single threaded for most ops) and with
  onnxruntime's default thread count (intra_op_num_threads=0).
* Images: a 1920x1080 JPEG (quality 90) made from models/samples/dog.jpg with Pillow, in a temp
  dir, and the 640-px samples of models/samples/ (dog, eagle, rocket).
* Load: `cvedge inspect --model models/demo` end to end (process start + package + tract model
  load/optimise), median of 5; onnxruntime InferenceSession creation, median of 5.
* Totals are per-iteration sums of the three stages; median and p90 over N repeats after the
  warm-up repeats are discarded.  Ratios are cvedge / onnxruntime medians.

Reproduce (from the repo root, after `cargo build --release`):

    python3 scripts/bench_predict.py --out docs/benchmarks.md

Options: --n (default 50), --warmup (default 5), --binary, --model, --out.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdoc  # noqa: E402  (sh(), cpu_name(), built(), head())
import reference_outputs as ref  # noqa: E402  (preprocess(), load_rgb(), resize_crop())

REPO = ref.REPO
STAGES = ("decode", "preprocess", "inference", "total")
LINE = re.compile(r"^(?P<path>.*): decode (?P<decode>[\d.]+) ms, preprocess (?P<preprocess>[\d.]+) ms, "
                  r"inference (?P<inference>[\d.]+) ms$")
CMD = "python3 scripts/bench_predict.py --out docs/benchmarks.md"


# --------------------------------------------------------------------------------------
# inputs


def make_images(tmp):
    """[(group label, [paths])]: the 1920x1080 JPEG and the 640-px samples."""
    big = os.path.join(tmp, "dog_1920x1080.jpg")
    with Image.open(os.path.join(REPO, "models", "samples", "dog.jpg")) as im:
        im.convert("RGB").resize((1920, 1080), Image.BICUBIC).save(big, "JPEG", quality=90)
    small = []
    for name in sorted(os.listdir(os.path.join(REPO, "models", "samples"))):
        p = os.path.join(REPO, "models", "samples", name)
        if name.lower().endswith(".jpg"):
            with Image.open(p) as im:
                if max(im.size) == 640:
                    small.append(p)
    sizes = []
    for p in small:
        with Image.open(p) as im:
            sizes.append("%dx%d" % im.size)
    return [("1920x1080 (dog.jpg upscaled, q90)", [big]),
            ("640 px samples (%s; %s)" % (", ".join(os.path.basename(p) for p in small), ", ".join(sizes)), small)]


def schedule(groups, warmup, n):
    """Warm-up passes over every image, then n rounds over every image (interleaved so that
    drifting machine load hits every image alike). Returns [(path, counted)]."""
    paths = [p for _, ps in groups for p in ps]
    return [(p, False) for _ in range(warmup) for p in paths] + [(p, True) for _ in range(n) for p in paths]


# --------------------------------------------------------------------------------------
# cvedge


def run_cvedge(binary, model, sched):
    cmd = [binary, "predict", "--model", model, "--timings", "--json"] + [p for p, _ in sched]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise SystemExit("FATAL: %s failed (%d):\n%s" % (" ".join(cmd[:6]), r.returncode, r.stderr[-2000:]))
    rows = []
    for line in r.stderr.splitlines():
        m = LINE.match(line)
        if m:
            rows.append({k: float(m.group(k)) for k in ("decode", "preprocess", "inference")} | {"path": m.group("path")})
    if len(rows) != len(sched):
        raise SystemExit("FATAL: expected %d timing lines from cvedge, got %d:\n%s"
                         % (len(sched), len(rows), r.stderr[-2000:]))
    per_path = {}
    for (p, counted), row in zip(sched, rows):
        if row["path"] != p:
            raise SystemExit("FATAL: timing line for %s where %s was expected" % (row["path"], p))
        if counted:
            row["total"] = row["decode"] + row["preprocess"] + row["inference"]
            per_path.setdefault(p, []).append(row)
    first = {}
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            first.setdefault(d.get("image"), d)
    return per_path, first


def cvedge_load_ms(binary, model, reps=5):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = subprocess.run([binary, "inspect", "--model", model], capture_output=True, text=True, cwd=REPO)
        out.append((time.perf_counter() - t0) * 1e3)
        if r.returncode != 0:
            raise SystemExit("FATAL: cvedge inspect failed:\n" + r.stderr)
    return out


# --------------------------------------------------------------------------------------
# onnxruntime


def tensor_from_rgb(rgb, cfg):
    """ref.preprocess() minus its decode step: the same code, handed an already decoded frame."""
    real = ref.load_rgb
    ref.load_rgb = lambda _path: rgb
    try:
        return ref.preprocess(None, cfg["recipe"], cfg["input_size"], cfg["color"], cfg["range"],
                              cfg["mean_bgr"], cfg["layout"],
                              np.float16 if cfg["dtype"] == "float16" else np.float32)
    finally:
        ref.load_rgb = real


def session(model_path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads  # 0 = onnxruntime's default
    if threads == 1:
        so.inter_op_num_threads = 1
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


def ort_session_ms(model_path, threads, reps=5):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        session(model_path, threads)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def pillow_decode_only(sched):
    """Informational: Pillow's JPEG decode alone (Image.load(), no EXIF transpose, no copies into
    numpy), to separate libjpeg-turbo's cost from load_rgb()'s image copies."""
    per_path = {}
    for p, counted in sched:
        t0 = time.perf_counter()
        with Image.open(p) as im:
            im.load()
        if counted:
            per_path.setdefault(p, []).append({"decode": (time.perf_counter() - t0) * 1e3})
    return per_path


def run_ort(model_path, cfg, threads, sched):
    s = session(model_path, threads)
    outs = [o.name for o in s.get_outputs()]
    out = "loss" if "loss" in outs else ("model_output" if "model_output" in outs else outs[0])
    per_path, probs = {}, {}
    for p, counted in sched:
        t0 = time.perf_counter()
        rgb = ref.load_rgb(p)
        t1 = time.perf_counter()
        x = tensor_from_rgb(rgb, cfg)
        t2 = time.perf_counter()
        y = s.run([out], {cfg["input"]: x})[0]
        t3 = time.perf_counter()
        probs.setdefault(p, np.asarray(y, dtype=np.float64).reshape(-1))
        if counted:
            row = {"decode": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3, "inference": (t3 - t2) * 1e3}
            row["total"] = row["decode"] + row["preprocess"] + row["inference"]
            per_path.setdefault(p, []).append(row)
    return per_path, probs


# --------------------------------------------------------------------------------------
# report


def stats(per_path, paths, stage):
    v = [row[stage] for p in paths for row in per_path[p]]
    return float(np.median(v)), float(np.percentile(v, 90))


def machine_info(binary):
    sh = benchdoc.sh
    tract = "?"
    lock = os.path.join(REPO, "Cargo.lock")
    if os.path.exists(lock):
        m = re.search(r'name = "tract-core"\nversion = "([^"]+)"', open(lock).read())
        tract = m.group(1) if m else "?"
    v = {k: x for k, x in ref.versions().items() if x}
    return {
        "nproc": sh(["nproc"]),
        "cpu": benchdoc.cpu_name(),
        "threads_per_core": next((l.split(":")[1].strip() for l in sh(["lscpu"]).splitlines()
                                  if l.startswith("Thread(s) per core")), "?"),
        "kernel": platform.release(),
        "cvedge": sh([binary, "--version"]),
        "tract": tract,
        "rustc": sh(["rustc", "--version"]),
        "built": benchdoc.built(binary),
        "git": benchdoc.head(),
        "python": " ".join("%s %s" % kv for kv in v.items()),
    }


def fmt(x):
    return "%.1f" % x if x >= 10 else "%.2f" % x


def build_table(groups, cv, o1, od):
    lines = ["| image | stage | cvedge median | cvedge p90 | ort 1 thread median | ort 1 thread p90 "
             "| ort default median | ort default p90 | cvedge / ort 1 thread | cvedge / ort default |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for label, paths in groups:
        for st in STAGES:
            c, a, b = stats(cv, paths, st), stats(o1, paths, st), stats(od, paths, st)
            name = "**%s**" % st if st == "total" else st
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %.2fx | %.2fx |" % (
                label, name, fmt(c[0]), fmt(c[1]), fmt(a[0]), fmt(a[1]), fmt(b[0]), fmt(b[1]),
                c[0] / a[0] if a[0] else float("nan"), c[0] / b[0] if b[0] else float("nan")))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50, help="counted repeats per image (default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="discarded warm-up repeats per image (default 5)")
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "cvedge"))
    ap.add_argument("--model", default="models/demo", help="export folder (model.onnx inside)")
    ap.add_argument("--out", help="also write this markdown file (e.g. docs/benchmarks.md)")
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        raise SystemExit("FATAL: %s not found: run `cargo build --release` first" % args.binary)
    model_dir = os.path.join(REPO, args.model)
    model_path = os.path.join(model_dir, "model.onnx")
    cfg = ref.onnx_config(model_path, model_dir)
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)

    with tempfile.TemporaryDirectory(prefix="cvedge-bench-") as tmp:
        groups = make_images(tmp)
        paths = [p for _, ps in groups for p in ps]
        for p in paths:  # the stand-in decode must give exactly preprocess()'s tensor
            x = ref.preprocess(p, cfg["recipe"], cfg["input_size"], cfg["color"], cfg["range"],
                               cfg["mean_bgr"], cfg["layout"])
            assert np.array_equal(x, tensor_from_rgb(ref.load_rgb(p), cfg)), p
        sched = schedule(groups, args.warmup, args.n)
        print("%d images x (%d warm-up + %d) repeats; model %s (%s, %s %dx%d %s %s)" % (
            len(paths), args.warmup, args.n, args.model, os.path.basename(model_path), cfg["recipe"],
            cfg["input_size"], cfg["input_size"], cfg["color"].upper(), cfg["range"]), file=sys.stderr)

        print("cvedge load (inspect x5) ...", file=sys.stderr)
        cv_load = cvedge_load_ms(args.binary, args.model)
        print("ort session creation x5 ...", file=sys.stderr)
        o1_load = ort_session_ms(model_path, 1)
        od_load = ort_session_ms(model_path, 0)
        print("cvedge predict ...", file=sys.stderr)
        cv, cv_json = run_cvedge(args.binary, args.model, sched)
        print("onnxruntime, 1 thread ...", file=sys.stderr)
        o1, o1_probs = run_ort(model_path, cfg, 1, sched)
        print("onnxruntime, default threads ...", file=sys.stderr)
        od, _ = run_ort(model_path, cfg, 0, sched)
        raw = pillow_decode_only(sched)
        raw_note = "; ".join("%s: %s ms" % (label.split(" (")[0], fmt(stats(raw, ps, "decode")[0]))
                             for label, ps in groups)

        # Sanity: both runtimes classify alike (cvedge's JSON holds the cloud-format predictions).
        agree = []
        for p in paths:
            d = cv_json.get(p)
            if not d:
                continue
            cvp = {q["tagName"]: q["probability"] for q in d.get("predictions", [])}
            orp = dict(zip(cfg["labels"], o1_probs[p]))
            diff = max(abs(cvp[t] - orp[t]) for t in cvp if t in orp) if cvp else float("nan")
            agree.append("%s: top-1 %s / %s, max |dp| %.2g" % (
                os.path.basename(p), max(cvp, key=cvp.get) if cvp else "?", max(orp, key=orp.get), diff))

        table = build_table(groups, cv, o1, od)
    load_after = os.getloadavg()
    info = machine_info(args.binary)

    med = statistics.median
    load_table = "\n".join([
        "| load | median ms | min ms |",
        "|---|--:|--:|",
        "| cvedge: `cvedge inspect --model %s` end to end (process + package + tract load/optimise) | %.0f | %.0f |"
        % (args.model, med(cv_load), min(cv_load)),
        "| onnxruntime: `InferenceSession(...)`, 1 thread | %.0f | %.0f |" % (med(o1_load), min(o1_load)),
        "| onnxruntime: `InferenceSession(...)`, default threads | %.0f | %.0f |" % (med(od_load), min(od_load)),
        "| ratio cvedge / onnxruntime (1 thread) | %.1fx | |" % (med(cv_load) / med(o1_load)),
    ])
    machine = "\n".join([
        "- CPU: %s, `nproc` = %s (threads per core: %s), Linux %s" % (info["cpu"], info["nproc"], info["threads_per_core"], info["kernel"]),
        "- %s (tract %s, %s), binary built %s, HEAD %s" % (info["cvedge"], info["tract"], info["rustc"], info["built"], info["git"]),
        "- Python: %s" % info["python"],
        "- load average (1/5/15 min) at start %.2f/%.2f/%.2f, at end %.2f/%.2f/%.2f" % (load_before + load_after),
        "- run: %s UTC; N = %d counted repeats per image after %d warm-up repeats" % (
            started.strftime("%Y-%m-%d %H:%M"), args.n, args.warmup),
    ])
    report = "\n\n".join([
        "Per-image latency, ms (median and p90 over %d repeats per image):" % args.n,
        table,
        "Load / session creation, ms (5 runs):",
        load_table,
        "onnxruntime's decode column is `load_rgb()`: Pillow decode + `ImageOps.exif_transpose` "
        "(a copy even without an EXIF rotation) + `.convert(\"RGB\")` + a numpy copy. Pillow's "
        "libjpeg-turbo decode alone (`Image.open(p).load()`, median, same run): " + raw_note + ".",
        "Both runtimes classify alike (cvedge vs onnxruntime 1 thread):\n" + "\n".join("- " + a for a in agree),
        "Machine:\n" + machine,
    ])
    print(report)

    if args.out:
        out = os.path.join(REPO, args.out) if not os.path.isabs(args.out) else args.out
        os.makedirs(os.path.dirname(out), exist_ok=True)
        # This script owns the file's first part; later "## " sections (bench_loop.py's) are kept.
        kept = ""
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                old = f.read()
            at = old.find("\n## ")
            kept = old[at:] if at >= 0 else ""
        with open(out, "w", encoding="utf-8") as f:
            f.write(DOC.format(cmd=CMD, model=args.model, report=report).rstrip("\n") + "\n" + kept)
        print("wrote %s" % os.path.relpath(out, REPO), file=sys.stderr)


DOC = """# Benchmarks: `cvedge predict` latency per image

How long `cvedge predict` takes per image for the bundled demo model ({model}: an
EfficientNet-Lite0 backbone + 5-tag softmax head, ONNX, 224x224 BGR 0..255 input, shorter-side-256 + centre crop), split into
**decode** (file read + JPEG decode + EXIF orientation), **preprocess** (resize/crop, BGR, float
tensor) and **inference** (tract backbone + head), next to the same `model.onnx` in onnxruntime
(Python) with the identical preprocessing (`scripts/reference_outputs.py`: Pillow decode,
cv2 `INTER_LINEAR`), at `intra_op_num_threads=1` and at onnxruntime's default thread count.
cvedge is timed by its own `--timings` output, with all repeats in one process so model loading
is excluded; load time is reported separately.

Reproduce (from the repo root; `scripts/bench_predict.py`'s docstring says exactly what is timed):

```sh
cargo build --release
{cmd}
```

**Noise.** These numbers come from a shared 2-core virtual machine: absolute timings move by
tens of percent from run to run (and with whatever else runs on the host), and the default
thread count competes with everything else on 2 cores. Only the ratios between runtimes measured
in the same run are meaningful; compare ratios, not milliseconds, across runs. cvedge reports
stage times with 0.1 ms resolution, so sub-millisecond stages are coarse.

{report}
"""


if __name__ == "__main__":
    main()
