"""Engines and int8 (issue 5): the same model and the same input timed in cvedge (tract and
onnxruntime engines, fp32 and int8) and in its peers (onnxruntime and LiteRT from Python), in
one run, with the ratios cvedge / fastest peer and int8 / fp32.

What it measures
----------------
* Models, the very same files everywhere:
  - fp32: models/demo/model.onnx (EfficientNet-Lite0 + Gemm + Softmax, current Custom Vision
    layout) for cvedge and onnxruntime; its TFLite rebuild fp32.tflite for LiteRT
    (scripts/make_demo_tflite.py: the same weights op for op, NHWC input).
  - int8: `cvedge quantize --model models/demo --calibrate CAL --out CACHE/cvedge-int8` (a QDQ
    model.onnx) for cvedge and onnxruntime; int8.tflite (TFLite full-integer quantization,
    calibrated on the same CAL images) for LiteRT.
  CAL is --calibrate DIR or, by default, 60 deterministic variations of models/samples/*.jpg
  (make_demo_tflite.make_calibration()). Generated files live in --cache (target/peers/) and
  are rebuilt only when their inputs change (the TFLite pair) or every run (cvedge quantize).
* Input: one image (--image, default models/samples/dog.jpg, 640x480), decoded once; every run
  then preprocesses it (Custom Vision recipe: shorter side 256, centre crop 224, BGR float
  0..255; scripts/reference_outputs.py, cv2 INTER_LINEAR) and runs the model. That is what
  `cvedge bench` times per run (decode once, then preprocess + inference), and every run of
  every peer gets the same tensor (NCHW for onnxruntime, the same values NHWC for LiteRT).
  The peers' inference alone (without the Python preprocessing, under 1 ms) is reported too.
* Every configuration (engine x precision x threads) runs in its own process, so that peak RSS
  (VmHWM, as cvedge reports it) is that configuration's: cvedge through `cvedge bench --model
  FP32 --model INT8 --engine tract,onnxruntime --threads T --image IMG --runs N --json` (which
  starts a child per configuration), peers through this script's hidden --child mode (a Python
  interpreter with numpy, cv2 and only the runtime it measures; "rss before load" is that
  baseline). Per configuration: load_ms (onnxruntime: InferenceSession(); LiteRT:
  Interpreter() + allocate_tensors(), where the default XNNPACK delegate is applied), first_ms
  (the first run), then N timed runs: median_ms, p90_ms, fps = 1000 / median, rss_mb.
  onnxruntime: intra_op_num_threads = T, inter_op 1, sequential, ORT_ENABLE_ALL; LiteRT:
  num_threads = T with XNNPACK. Threads 0 means all cores, given to the peers as the count of
  usable CPUs (os.sched_getaffinity).
* --rounds rounds (default 3) of everything, in the same order each round; every number is the
  median over rounds. Ratios: a row's median / the fastest peer's median at the same precision
  and threads; int8 speed-up: fp32 median / int8 median on the same engine and threads.
  Targets (issue 5): the best cvedge engine within 1.1x of the fastest peer; int8 at least 1.8x
  faster than fp32 on the same engine, judged on the fastest cvedge engine at int8 (onnxruntime;
  tract's ratio is printed, not judged: it runs int8 folders at fp32 speed by design).

Reproduce (from the repo root; needs scripts/requirements.txt):

    cargo build --release
    python3 scripts/bench_peers.py --write-doc

Options: --cvedge PATH (default target/release/cvedge), --runs N (default 100), --rounds R
(default 3), --threads 1,2,0, --image, --model, --calibrate DIR, --cache DIR, --cvedge-engines
(default tract,onnxruntime), --skip-cvedge (peers only; the int8 ONNX is then --int8-model DIR
or a stand-in made by onnxruntime's quantize_static on the same calibration images, labelled as
such), --write-doc [FILE] (replace the "## Engines and int8 (issue 5)" section of FILE, default
docs/benchmarks.md, or append it).
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdoc  # noqa: E402  (run_timed(), replace_section())
import make_demo_tflite as mk  # noqa: E402  (make_calibration(), make(): the TFLite pair; TF imported only there)
import reference_outputs as ref  # noqa: E402  (load_rgb(), resize_crop(), preprocess())

REPO = ref.REPO
RECIPE, SIZE = "shorter-side-256", 224
HEADING = "## Engines and int8 (issue 5)"
PEERS = ("onnxruntime", "litert")
PEER_NAMES = {"onnxruntime": "onnxruntime (Python)", "litert": "LiteRT + XNNPACK (Python)"}


def all_cores():
    return len(os.sched_getaffinity(0))


def percentile(sorted_times, p):
    """The same rank rule as `cvedge bench`."""
    rank = int(round((len(sorted_times) - 1) * p))
    return sorted_times[min(rank, len(sorted_times) - 1)]


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# --------------------------------------------------------------------------------------
# one peer configuration (a child process)


def child(spec):
    """Times one peer configuration in this process; prints one JSON line."""
    engine, threads, runs = spec["engine"], spec["threads"], spec["runs"]
    nhwc = engine == "litert"
    rgb = ref.load_rgb(spec["image"])  # decoded once, as cvedge bench does

    def prep():
        a = ref.resize_crop(rgb, RECIPE, SIZE)[:, :, ::-1].astype(np.float32)  # BGR 0..255
        return np.ascontiguousarray((a if nhwc else a.transpose(2, 0, 1))[None])

    if engine == "onnxruntime":
        import onnxruntime as ort
        version = ort.__version__
        rss_base = peak_rss_mb()
        t0 = time.perf_counter()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(spec["model"], so, providers=["CPUExecutionProvider"])
        load = time.perf_counter() - t0
        name = sess.get_inputs()[0].name

        def infer(x):
            return sess.run(None, {name: x})[0]
    else:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter
        version = getattr(ai_edge_litert, "__version__", "?")
        rss_base = peak_rss_mb()
        t0 = time.perf_counter()
        it = Interpreter(model_path=spec["model"], num_threads=threads)  # default delegate: XNNPACK
        it.allocate_tensors()
        load = time.perf_counter() - t0
        i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

        def infer(x):
            it.set_tensor(i_in, x)
            it.invoke()
            return it.get_tensor(i_out)

    t0 = time.perf_counter()
    probs = infer(prep())
    first = time.perf_counter() - t0
    total, inference = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        x = prep()
        t1 = time.perf_counter()
        infer(x)
        t2 = time.perf_counter()
        total.append((t2 - t0) * 1e3)
        inference.append((t2 - t1) * 1e3)
    total.sort()
    inference.sort()
    median = percentile(total, 0.5)
    print(json.dumps({
        "engine": engine, "precision": spec["precision"], "threads": threads, "model": spec["model"],
        "load_ms": load * 1e3, "first_ms": first * 1e3, "median_ms": median, "p90_ms": percentile(total, 0.9),
        "fps": 1e3 / median, "rss_mb": peak_rss_mb(), "infer_median_ms": percentile(inference, 0.5),
        "rss_base_mb": rss_base, "version": version, "probs": [float(p) for p in np.asarray(probs).ravel()],
    }))


def run_child(spec):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                       capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise SystemExit("FATAL: peer %s %s %d threads failed (%d):\n%s" % (
            spec["engine"], spec["precision"], spec["threads"], r.returncode, r.stderr[-3000:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# models


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def cvedge_quantize(binary, model_dir, calib, out):
    if os.path.exists(out):
        shutil.rmtree(out)
    benchdoc.run_timed([binary, "quantize", "--model", model_dir, "--calibrate", calib, "--out", out],
                       "cvedge quantize")
    if not os.path.exists(os.path.join(out, "model.onnx")):
        raise SystemExit("FATAL: cvedge quantize wrote no %s/model.onnx" % out)
    return out


def ort_quantize_standin(model_dir, calib, out):
    """--skip-cvedge only: a QDQ int8 model by onnxruntime's quantize_static (per-channel int8
    weights, int8 activations, MinMax on the same calibration images), cached by its inputs."""
    files = mk.calibration_files(calib)
    src = os.path.join(model_dir, "model.onnx")
    key = mk.digest([src]) + mk.digest(files)
    stamp = os.path.join(out, "source.txt")
    if os.path.exists(stamp) and open(stamp).read() == key:
        return out
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"data": ref.preprocess(p, RECIPE, SIZE, "bgr", "0-255")} for p in files])

        def get_next(self):
            return next(self.items, None)

    os.makedirs(out, exist_ok=True)
    print("quantizing %s with onnxruntime quantize_static (stand-in for cvedge quantize) ..." % src, file=sys.stderr)
    quantize_static(src, os.path.join(out, "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    shutil.copy(os.path.join(model_dir, "labels.txt"), os.path.join(out, "labels.txt"))
    with open(stamp, "w") as f:
        f.write(key)
    return out


# --------------------------------------------------------------------------------------
# cvedge


def run_cvedge(binary, fp32_dir, int8_dir, engines, threads, image, runs):
    """One `cvedge bench` call for one threads value; rows keyed (engine, precision)."""
    cmd = [binary, "bench", "--model", fp32_dir, "--model", int8_dir, "--engine", engines,
           "--threads", str(threads), "--image", image, "--runs", str(runs), "--json"]
    r, _ = benchdoc.run_timed(cmd, "cvedge bench --threads %d" % threads)
    rows = {}
    for line in r.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        prec = d.get("precision") or ("int8" if os.path.abspath(d.get("model", "")) == os.path.abspath(int8_dir) else "fp32")
        prec = "int8" if "int8" in prec else "fp32"
        rows[("cvedge " + d["engine"], prec)] = d
    if not rows:
        raise SystemExit("FATAL: `%s` printed no JSON lines:\n%s" % (" ".join(cmd), r.stdout[-2000:]))
    return rows


# --------------------------------------------------------------------------------------
# report


KEYS = ("median_ms", "p90_ms", "load_ms", "first_ms", "fps", "rss_mb", "infer_median_ms", "rss_base_mb")


def fmt(x):
    if x is None or (isinstance(x, float) and x != x):
        return ""
    return "%.1f" % x if abs(x) >= 10 else "%.2f" % x


def aggregate(rounds):
    """rounds: list of {(row, prec, threads): result} -> the median of each key over rounds."""
    out = {}
    for key in rounds[0]:
        rs = [r[key] for r in rounds if key in r]
        agg = dict(rs[0])
        for k in KEYS:
            vals = [r[k] for r in rs if r.get(k) is not None]
            agg[k] = statistics.median(vals) if vals else None
        out[key] = agg
    return out


def row_order(res):
    """cvedge's rows sorted, then the peers in the order they were measured."""
    names = list(dict.fromkeys(k[0] for k in res))
    return sorted(n for n in names if n.startswith("cvedge ")) + [n for n in names if not n.startswith("cvedge ")]


def latency_intro(rounds, runs):
    """The sentence above every latency table (shared with bench_tflite.py)."""
    return ("Latency per run (preprocess + inference), ms, median over %d rounds of each configuration's "
            "median / p90 over %d runs; **/ fastest peer** = median / the fastest peer's median at that "
            "precision and threads:" % (rounds, runs))


def tables(res, threads_list, int8_label):
    parts = []
    for t in threads_list:
        shown = "%d (all cores = %d)" % (t, all_cores()) if t == 0 else str(t)
        lines = ["**threads %s**" % shown, "",
                 "| engine | precision | median ms | p90 ms | load ms | first ms | fps | rss MB "
                 "| / fastest peer | peer inference alone, median ms | peer rss before load, MB |",
                 "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for prec in ("fp32", "int8"):
            peers = [r["median_ms"] for k, r in res.items() if k[1:] == (prec, t) and not k[0].startswith("cvedge ")]
            fastest = min(peers) if peers else None
            for name in row_order(res):
                r = res.get((name, prec, t))
                if r is None:
                    continue
                ratio = "%.2fx" % (r["median_ms"] / fastest) if fastest else ""
                if name.startswith("cvedge "):
                    ratio = "**%s**" % ratio if ratio else ""
                label = prec if not (prec == "int8" and int8_label and name == PEER_NAMES["onnxruntime"]) \
                    else "int8 (%s)" % int8_label
                lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    name, label, fmt(r["median_ms"]), fmt(r["p90_ms"]), fmt(r["load_ms"]), fmt(r["first_ms"]),
                    fmt(r["fps"]), fmt(r["rss_mb"]), ratio, fmt(r.get("infer_median_ms")), fmt(r.get("rss_base_mb"))))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def nthreads(t):
    return "all cores" if t == 0 else "1 thread" if t == 1 else "%d threads" % t


NOT_JUDGED = {"cvedge tract": "tract runs int8 folders in float at fp32 speed by design, README "
                              "'Engines, threads and int8'"}


def verdicts(res, threads_list, skipped):
    lines = []
    # 1. best cvedge engine vs the fastest peer, per precision and threads
    if skipped:
        lines.append("- **best cvedge engine within 1.1x of fastest peer**: not measured (--skip-cvedge)")
    else:
        items, ok = [], True
        for prec in ("fp32", "int8"):
            for t in threads_list:
                cv = [(r["median_ms"], k[0]) for k, r in res.items() if k[1] == prec and k[2] == t and k[0].startswith("cvedge ")]
                pe = [(r["median_ms"], k[0]) for k, r in res.items() if k[1] == prec and k[2] == t and not k[0].startswith("cvedge ")]
                if not cv or not pe:
                    continue
                (c, cn), (p, pn) = min(cv), min(pe)
                ok = ok and c / p <= 1.1
                items.append("%s %s: %s %.2fx %s" % (prec, nthreads(t), cn, c / p, pn))
        lines.append("- **best cvedge engine within 1.1x of fastest peer**: %s (%s)" % (
            "met" if ok and items else "NOT met", "; ".join(items)))
    # 2. int8 vs fp32 on the same engine. The target is about the engine one would run int8 on:
    # judged on the fastest cvedge engine at int8 (per thread count); the others are printed with
    # the reason they are not judged (tract runs int8 folders at fp32 speed by design).
    judged, unjudged, others, ok = {}, {}, {}, True
    for t in threads_list:
        speeds = {n: (res[(n, "fp32", t)]["median_ms"] / res[(n, "int8", t)]["median_ms"], res[(n, "int8", t)]["median_ms"])
                  for n in row_order(res) if (n, "fp32", t) in res and (n, "int8", t) in res}
        best = min((n for n in speeds if n.startswith("cvedge ")), key=lambda n: speeds[n][1], default=None)
        for name, (s, _) in speeds.items():
            text = "%s %.2fx" % (nthreads(t), s)
            if name == best:
                ok = ok and s >= 1.8
                judged.setdefault(name, []).append(text)
            elif name.startswith("cvedge "):
                unjudged.setdefault(name, []).append(text)
            else:
                others.setdefault(name, []).append(text)
    peers = "; ".join("%s %s" % (n, ", ".join(v)) for n, v in others.items())
    if judged:
        items = ["%s %s" % (n, ", ".join(v)) for n, v in judged.items()]
        items += ["%s %s (not judged: %s)" % (n, ", ".join(v), NOT_JUDGED.get(n, "not the fastest cvedge engine at int8"))
                  for n, v in unjudged.items()]
        lines.append("- **int8 >= 1.8x faster than fp32 on the same engine** (judged on the fastest cvedge engine at "
                     "int8): %s (%s; peers, for reference: %s)" % ("met" if ok else "NOT met", "; ".join(items), peers))
    else:
        lines.append("- **int8 >= 1.8x faster than fp32 on the same engine**: cvedge not measured "
                     "(--skip-cvedge); peers, for reference: %s" % peers)
    return "\n".join(lines)


def machine(args, binary, started, load_before, load_after, versions):
    if binary:
        cv = "%s, binary built %s" % (benchdoc.sh([binary, "--version"]), benchdoc.built(binary))
    else:
        cv = "cvedge not run (--skip-cvedge)"
    return "\n".join([
        benchdoc.host_line(),
        "- %s, HEAD %s" % (cv, benchdoc.head()),
        "- Python %s: %s, numpy %s" % (platform.python_version(), ", ".join(versions), np.__version__),
        benchdoc.load_line(load_before, load_after),
        "- run: %s UTC; %d round(s) x (load + first + %d timed runs) per configuration; image %s" % (
            started.strftime("%Y-%m-%d %H:%M"), args.rounds, args.runs, os.path.relpath(args.image, REPO)),
    ])


SECTION = """{heading}

The same model and the same input in cvedge's two engines (tract, built in; onnxruntime, loaded at
run time: scripts/install_onnxruntime.sh) and in two peers, fp32 and int8, measured in one run:
onnxruntime and LiteRT (TFLite with its default XNNPACK delegate) from Python. fp32 is
models/demo/model.onnx (for LiteRT its TFLite rebuild, scripts/make_demo_tflite.py); int8 is the
QDQ model.onnx `cvedge quantize` writes (for LiteRT the full-integer int8 TFLite, calibrated on
the same images). Every configuration runs in its own process (peak RSS is its own); each timed
run is preprocess + inference of the once-decoded image, as `cvedge bench` times it.
`scripts/bench_peers.py`'s docstring says exactly what is timed.

Reproduce (from the repo root):

```sh
cargo build --release
{cmd}
```

Ratios compare medians at the same precision and thread count; the same noise caveat as above (a
shared 2-core VM: compare ratios within the run, not milliseconds across runs).

{report}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cvedge", default=os.path.join(REPO, "target", "release", "cvedge"), help="cvedge binary")
    ap.add_argument("--model", default="models/demo", help="fp32 export folder (model.onnx inside)")
    ap.add_argument("--image", default="models/samples/dog.jpg")
    ap.add_argument("--runs", type=int, default=100, help="timed runs per configuration after one first run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every configuration; medians over rounds")
    ap.add_argument("--threads", default="1,2,0", help="comma-separated thread counts, 0 = all cores")
    ap.add_argument("--calibrate", help="calibration image folder (default: 60 variations of models/samples)")
    ap.add_argument("--cache", default=os.path.join(REPO, "target", "peers"), help="generated models (default target/peers)")
    ap.add_argument("--cvedge-engines", default="tract,onnxruntime", help="cvedge bench --engine")
    ap.add_argument("--skip-cvedge", action="store_true", help="peers only")
    ap.add_argument("--int8-model", help="with --skip-cvedge: an int8 export folder for the onnxruntime peer")
    ap.add_argument("--write-doc", nargs="?", const="docs/benchmarks.md", metavar="FILE",
                    help="rewrite the '%s' section of FILE (default docs/benchmarks.md)" % HEADING[3:])
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    args.image = os.path.abspath(os.path.join(REPO, args.image))
    model_dir = os.path.abspath(os.path.join(REPO, args.model))
    threads_list = [int(t) for t in args.threads.split(",")]
    cache = os.path.abspath(args.cache)
    binary = None if args.skip_cvedge else os.path.abspath(args.cvedge)
    if binary and not os.path.exists(binary):
        raise SystemExit("FATAL: %s not found: run `cargo build --release` first (or --skip-cvedge)" % binary)

    calib = os.path.abspath(args.calibrate) if args.calibrate else mk.make_calibration(os.path.join(cache, "calibration"))
    int8_label = ""
    if binary:
        print("cvedge quantize ...", file=sys.stderr)
        int8_dir = cvedge_quantize(binary, model_dir, calib, os.path.join(cache, "cvedge-int8"))
    elif args.int8_model:
        int8_dir = os.path.abspath(args.int8_model)
        int8_label = os.path.relpath(int8_dir, REPO)
    else:
        int8_dir = ort_quantize_standin(model_dir, calib, os.path.join(cache, "ort-int8"))
        int8_label = "onnxruntime quantize_static stand-in"
    tfl32, tfl8 = mk.make(model_dir, calib, os.path.join(cache, "tflite"))
    files = {("onnxruntime", "fp32"): os.path.join(model_dir, "model.onnx"),
             ("onnxruntime", "int8"): os.path.join(int8_dir, "model.onnx"),
             ("litert", "fp32"): tfl32, ("litert", "int8"): tfl8}

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    rounds, versions = [], {}
    for rnd in range(args.rounds):
        res = {}
        for t in threads_list:
            if binary:
                print("round %d/%d: cvedge bench, threads %d ..." % (rnd + 1, args.rounds, t), file=sys.stderr)
                for (name, prec), d in run_cvedge(binary, model_dir, int8_dir, args.cvedge_engines, t,
                                                  args.image, args.runs).items():
                    res[(name, prec, t)] = d
            for peer in PEERS:
                for prec in ("fp32", "int8"):
                    print("round %d/%d: %s %s, threads %d ..." % (rnd + 1, args.rounds, peer, prec, t), file=sys.stderr)
                    d = run_child({"engine": peer, "precision": prec, "threads": t or all_cores(),
                                   "model": files[(peer, prec)], "image": args.image, "runs": args.runs})
                    versions[peer] = d["version"]
                    res[(PEER_NAMES[peer], prec, t)] = d
        rounds.append(res)
    load_after = os.getloadavg()
    res = aggregate(rounds)

    # The peers classify the image alike (last round's outputs).
    labels = ref.read_labels(model_dir) or []
    agree = []
    for prec in ("fp32", "int8"):
        outs = {p: rounds[-1][(PEER_NAMES[p], prec, threads_list[0])]["probs"] for p in PEERS}
        tops = {p: labels[int(np.argmax(o))] if len(labels) == len(o) else str(int(np.argmax(o)))
                for p, o in outs.items()}
        agree.append("%s: top-1 %s, max |dp| between them %.1e" % (
            prec, " / ".join("%s %s" % (p, tops[p]) for p in PEERS),
            float(np.abs(np.subtract(*[outs[p] for p in PEERS])).max())))
    model_lines = [
        "- fp32: %s (sha256 %s), %s (sha256 %s)" % (os.path.relpath(files[("onnxruntime", "fp32")], REPO),
                                                     sha256(files[("onnxruntime", "fp32")])[:12],
                                                     os.path.relpath(tfl32, REPO), sha256(tfl32)[:12]),
        "- int8: %s%s (sha256 %s), %s (sha256 %s)" % (
            os.path.relpath(files[("onnxruntime", "int8")], REPO), " [%s]" % int8_label if int8_label else "",
            sha256(files[("onnxruntime", "int8")])[:12], os.path.relpath(tfl8, REPO), sha256(tfl8)[:12]),
        "- calibration: %d images in %s" % (len(mk.calibration_files(calib)), os.path.relpath(calib, REPO)),
        "- the peers on the image: %s" % "; ".join(agree),
    ]
    vers = ["onnxruntime %s" % versions.get("onnxruntime", "?"), "ai-edge-litert %s" % versions.get("litert", "?")]
    report = "\n\n".join([
        latency_intro(args.rounds, args.runs),
        tables(res, threads_list, int8_label),
        "Targets (issue 5):\n\n" + verdicts(res, threads_list, binary is None),
        "Models and outputs:\n" + "\n".join(model_lines),
        "Machine:\n" + machine(args, binary, started, load_before, load_after, vers),
    ])
    print(report)
    if args.write_doc:
        cmd = "python3 scripts/bench_peers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        benchdoc.replace_section(args.write_doc, HEADING, SECTION.format(heading=HEADING, cmd=cmd.strip(), report=report))


if __name__ == "__main__":
    main()
