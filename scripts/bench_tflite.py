"""TFLite exports: engines and int8 (issue 5). A real Custom Vision TFLite export timed in cvedge
(tract on the .tflite; onnxruntime on its ONNX twin; both on the int8 export `cvedge quantize`
makes of it) and in its peers, in one run, with the ratios cvedge / fastest peer and int8 / fp32,
the int8 model's top-1 agreement and peak RSS.

* Model: --export (default $CVEDGE_FIXTURES or ../shared/fixtures/exports, folder
  tflite-fp16-appleorange-2025: a 2025 "General (compact)" ShuffleNet-like export, fp16 weights,
  224 input, 2 tags). Read in place, never copied into the repository.
* Made from it, in --cache (target/peers/tflite-export/), every run:
  - int8: `cvedge quantize --model EXPORT --calibrate CAL` (a QDQ ONNX export). Its report
    (quantization.json: top-1 agreement with the float model on the held-out fifth of CAL) is the
    agreement figure.
  - twin: `cvedge export EXPORT` (the NCHW ONNX twin) for the onnxruntime peer, and
    onnxruntime's own quantize_static int8 of it (bench_peers.ort_quantize_standin).
  CAL: --calibrate DIR, or 120 deterministic variations (crops, flips, brightness, contrast) of the
  export's own samples/*.jpg (make_demo_tflite.make_calibration), i.e. in-domain photos.
* Peers: LiteRT (ai-edge-litert Interpreter, XNNPACK, num_threads) on the very same model.tflite;
  onnxruntime (Python) on the twin (fp32) and on cvedge's int8 model.onnx (the same int8 model
  cvedge runs); onnxruntime (Python) on its quantize_static int8. There is no LiteRT int8 peer: the
  TFLite converter quantizes a TensorFlow graph (SavedModel, Keras, concrete function), and an
  export ships only the .tflite; it cannot take a .tflite back in.
* Timing, processes, rounds and medians exactly as scripts/bench_peers.py (whose functions this
  reuses): `cvedge bench --json` per threads value (a child per configuration), every peer
  configuration in its own child; each run = preprocess (shorter side 256, centre crop 224, BGR
  0..255; NHWC for the .tflite, NCHW for the ONNX files) + inference of one once-decoded image.

    cargo build --release
    python3 scripts/bench_tflite.py --write-doc

Options: --cvedge PATH, --export DIR, --image (default EXPORT/samples/mslearn_IMG_TEST_3_orange.jpg),
--runs N (100), --rounds R (3), --threads (1,2), --calibrate DIR, --cache DIR, --write-doc [FILE]
(replace the "## TFLite exports: engines and int8 (issue 5)" section of FILE, default
docs/benchmarks.md).
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_peers as bp  # noqa: E402  (run_cvedge(), run_child(), aggregate(), tables(), verdicts(), machine())
import benchdoc  # noqa: E402
import make_demo_tflite as mk  # noqa: E402  (make_calibration(), calibration_files())
import reference_outputs as ref  # noqa: E402

REPO = ref.REPO
HEADING = "## TFLite exports: engines and int8 (issue 5)"
EXPORT = "tflite-fp16-appleorange-2025"
LITERT, ORT, ORT_QS = "LiteRT + XNNPACK (Python)", "onnxruntime (Python)", "onnxruntime (Python), its quantize_static"
RSS_LIMIT_MB = 60


def rel(path):
    return os.path.relpath(path, REPO)


def rss_verdict(res):
    """Target: a 224 model under 60 MB of peak RSS, per cvedge engine (largest over precision and threads)."""
    worst = {}
    for (name, prec, t), r in res.items():
        if name.startswith("cvedge "):
            worst.setdefault(name, {})[prec] = max(worst.get(name, {}).get(prec, 0), r["rss_mb"])
    items = ["%s %s (%s)" % (n, "met" if max(v.values()) < RSS_LIMIT_MB else "NOT met",
                             ", ".join("%s %.1f MB" % kv for kv in sorted(v.items()))) for n, v in sorted(worst.items())]
    return "- **peak RSS of a 224 model under %d MB** (largest over threads): %s" % (RSS_LIMIT_MB, "; ".join(items))


SECTION = """{heading}

A real TFLite export in cvedge and its peers, fp32 and int8, in one run: `{export}`,
Custom Vision's 2025 "General (compact)" ShuffleNet-like export (fp16 weights, 224 input, 2 tags; a
test fixture, not in the repository). cvedge: tract runs the .tflite, onnxruntime its ONNX twin
(NHWC input, as the source); int8 is the ONNX export `cvedge quantize` makes of the .tflite, run on
both engines. Peers: LiteRT + XNNPACK on the very same model.tflite; onnxruntime (Python) on the
NCHW twin `cvedge export` writes, on cvedge's int8 model.onnx, and on its own `quantize_static`
int8 of the twin. There is no LiteRT int8 row: TFLite's converter quantizes a TensorFlow graph, and
the export ships only the .tflite. Processes, timed runs, rounds and medians as in "Engines and
int8" above; `scripts/bench_tflite.py`'s docstring has the details.

Reproduce (from the repo root, with the fixtures in ../shared/fixtures/exports or
`$CVEDGE_FIXTURES`):

```sh
cargo build --release
{cmd}
```

A shared 2-core VM: compare ratios within the run, not milliseconds across runs; when the load
average in the machine line is above 2, other work shares the cores and the 2-thread rows measure
that contention more than the engines.

{report}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cvedge", default=os.path.join(REPO, "target", "release", "cvedge"))
    ap.add_argument("--export", help="TFLite export folder (default: FIXTURES/%s)" % EXPORT)
    ap.add_argument("--image", help="default: EXPORT/samples/mslearn_IMG_TEST_3_orange.jpg")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--calibrate", help="calibration images (default: 120 variations of EXPORT/samples)")
    ap.add_argument("--cache", default=os.path.join(REPO, "target", "peers", "tflite-export"))
    ap.add_argument("--write-doc", nargs="?", const="docs/benchmarks.md", metavar="FILE")
    args = ap.parse_args()

    export = os.path.abspath(args.export or os.path.join(ref.FIXTURES, EXPORT))
    args.image = os.path.abspath(args.image or os.path.join(export, "samples", "mslearn_IMG_TEST_3_orange.jpg"))
    binary, cache = os.path.abspath(args.cvedge), os.path.abspath(args.cache)
    threads_list = [int(t) for t in args.threads.split(",")]
    for p in (export, args.image, binary):
        if not os.path.exists(p):
            raise SystemExit("FATAL: %s not found" % p)
    calib = os.path.abspath(args.calibrate) if args.calibrate else mk.make_calibration(
        os.path.join(cache, "calibration"), per_sample=30, source=os.path.join(export, "samples"))

    print("cvedge quantize, cvedge export, onnxruntime quantize_static ...", file=sys.stderr)
    int8_dir = bp.cvedge_quantize(binary, export, calib, os.path.join(cache, "cvedge-int8"))
    quant = json.load(open(os.path.join(int8_dir, "quantization.json")))
    twin = os.path.join(cache, "twin")
    shutil.rmtree(twin, ignore_errors=True)
    benchdoc.run_timed([binary, "export", export, "--out", twin], "cvedge export")
    ort_int8 = bp.ort_quantize_standin(twin, calib, os.path.join(cache, "ort-int8"))
    peers = [(LITERT, "litert", "fp32", os.path.join(export, "model.tflite")),
             (ORT, "onnxruntime", "fp32", os.path.join(twin, "model.onnx")),
             (ORT, "onnxruntime", "int8", os.path.join(int8_dir, "model.onnx")),
             (ORT_QS, "onnxruntime", "int8", os.path.join(ort_int8, "model.onnx"))]

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before, rounds, versions = os.getloadavg(), [], {}
    for rnd in range(args.rounds):
        res = {}
        for t in threads_list:
            print("round %d/%d, threads %d ..." % (rnd + 1, args.rounds, t), file=sys.stderr)
            for (name, prec), d in bp.run_cvedge(binary, export, int8_dir, "tract,onnxruntime", t,
                                                 args.image, args.runs).items():
                res[(name, prec, t)] = d
            for name, engine, prec, model in peers:
                d = bp.run_child({"engine": engine, "precision": prec, "threads": t or bp.all_cores(),
                                  "model": model, "image": args.image, "runs": args.runs})
                versions[engine] = d["version"]
                res[(name, prec, t)] = d
        rounds.append(res)
    load_after = os.getloadavg()
    res = bp.aggregate(rounds)

    labels = ref.read_labels(export)
    tops = ["%s %s %s %.4f" % (name, prec, labels[int(np.argmax(d["probs"]))], max(d["probs"]))
            for (name, prec, t), d in rounds[-1].items() if t == threads_list[0] and "probs" in d]
    ch = quant["chosen"]
    agreement = "- **top-1 agreement of int8 with fp32 >= 99%%**: %s (%.1f%% of %d held-out images, largest " \
        "probability difference %.4f; %s ranges, chosen by `cvedge quantize` among %s)" % (
            "met" if ch["agreement"] >= 0.99 else "NOT met", 100 * ch["agreement"], quant["holdout_images"],
            ch["max_difference"], ch["method"], ", ".join(c["method"] for c in quant["candidates"]))
    models = [
        "- fp32: %s (sha256 %s); its twin %s (sha256 %s)" % (
            os.path.join(EXPORT, "model.tflite"), bp.sha256(peers[0][3])[:12], rel(peers[1][3]), bp.sha256(peers[1][3])[:12]),
        "- int8: %s (sha256 %s; %d int8 convolutions), %s (sha256 %s)" % (
            rel(peers[2][3]), bp.sha256(peers[2][3])[:12], quant["int8_convolutions"], rel(peers[3][3]),
            bp.sha256(peers[3][3])[:12]),
        "- calibration: %d images in %s (%d calibrate, %d held out)" % (
            len(mk.calibration_files(calib)), rel(calib), quant["calibration_images"], quant["holdout_images"]),
        "- the peers on the image (top-1, probability): %s" % "; ".join(tops),
    ]
    vers = ["onnxruntime %s" % versions.get("onnxruntime", "?"), "ai-edge-litert %s" % versions.get("litert", "?")]
    report = "\n\n".join([
        bp.latency_intro(args.rounds, args.runs),
        bp.tables(res, threads_list, ""),
        "Targets (issue 5):\n\n" + "\n".join([bp.verdicts(res, threads_list, False), agreement, rss_verdict(res)]),
        "Models and outputs:\n" + "\n".join(models),
        "Machine:\n" + bp.machine(args, binary, started, load_before, load_after, vers),
    ])
    print(report)
    if args.write_doc:
        argv = [a for i, a in enumerate(sys.argv[1:]) if not (a.startswith("--cvedge") or sys.argv[i] == "--cvedge")]
        cmd = "python3 scripts/bench_tflite.py " + " ".join(shlex.quote(a) for a in argv)  # the binary: the machine line
        benchdoc.replace_section(args.write_doc, HEADING, SECTION.format(
            heading=HEADING, export=EXPORT, cmd=cmd.strip(), report=report))


if __name__ == "__main__":
    main()
