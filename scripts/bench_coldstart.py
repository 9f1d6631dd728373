"""Cold start of the `cvedge run` daemon (issue 5): the time from spawning the process to the first
prediction message arriving at an MQTT subscriber, per engine (tract, onnxruntime, auto) and per
model (the fp32 demo models/demo and, with --int8 DIR, an int8 export such as `cvedge quantize`
writes). Target: under 1 s on x86.

What it measures
----------------
* Broker and subscriber, started once for the whole run: a private mosquitto on a free loopback
  port (`listener PORT 127.0.0.1`, `allow_anonymous true`, no persistence), and `mosquitto_sub -q 1
  -F '%U %t' -t 'cvedge/#'` (line-buffered), which stamps every message with its arrival time
  (Unix seconds, ns fraction). The subscriber is checked to receive (a probe message) before the
  first cvedge starts. Every cvedge run has its own device name, so its messages are told apart by
  topic; only `cvedge/<device>/<camera>/predictions` counts.
* One run = one `cvedge run --config FILE --max-frames 1` with a fresh TOML file and a fresh
  state/data folder (so nothing is left from a previous run): top-level `model`, `device`,
  `engine` (tract | onnxruntime | auto: the engine is chosen only there), `threads` (--threads,
  default 0 = one per core), `state_dir`, `data_dir`; `[mqtt] url` = the private broker; one
  `[[camera]]` replaying models/samples/dog.jpg (`file:` source, which loops; default pacing).
  `--max-frames 1` (a hidden flag) makes the daemon print one JSON statistics line on stderr when
  the first frame is classified and then stop (its main loop polls the stop flag every 100 ms, so
  a few more frames may be classified and published before it exits).
  The process runs in a temporary folder with RUST_LOG=`warn,tract_onnx=error,cvedge=info`
  (the default filter plus cvedge's three start-up lines), its stderr read line by line by a
  thread that stamps each line on arrival.
* Times, all from `time.time_ns()` taken right before Popen (so fork/exec counts):
  - **first prediction**: the arrival time (%U) of the first prediction message of that run's
    device at the subscriber, minus the spawn time. The headline number.
  - **exit**: os.wait4() on the process returns (blocking; nothing polls), minus the spawn time.
    Includes up to 100 ms of the daemon's stop-flag poll and the clean shutdown (offline status
    messages, MQTT disconnect).
  - phases (where the time goes), from the stderr lines: **model loaded** = the `engine: ...`
    log line (written after the model is loaded and, for auto, both engines tried on a check
    photo), **MQTT connected**, **camera online**, **first classified** = the statistics line
    (the daemon checks its counter every 5 ms).
  - **peak RSS**: ru_maxrss of the rusage os.wait4() returns for that one process (= VmHWM at
    exit; RUSAGE_CHILDREN would be the max over all children ever reaped). CPU: its user +
    system time, from the same rusage.
* Per configuration (model x engine), first one unmeasured run (warms the page cache, and tells
  whether the engine is available: if onnxruntime's library cannot be loaded, the daemon exits
  with an error naming it, and that row is reported "not available"; auto then falls back to
  tract, which its `engine:` line says), then --runs measured runs (default 5), interleaved
  round-robin over the configurations so that machine noise spreads evenly. Reported: median and
  max of first prediction and exit, median of the phases and CPU, max of peak RSS.

Reproduce (from the repo root, after `cargo build --release`; needs mosquitto and mosquitto_sub
on PATH; onnxruntime from scripts/install_onnxruntime.sh for that engine):

    python3 scripts/bench_coldstart.py --int8 target/peers/cvedge-int8 --write-doc

(target/peers/cvedge-int8 is the `cvedge quantize` output scripts/bench_peers.py leaves; any
int8 export folder will do: `cvedge quantize --model models/demo --calibrate CAL --out DIR`.)
Options: --cvedge PATH (default target/release/cvedge), --model DIR (fp32, default models/demo),
--int8 DIR, --engines (default tract,onnxruntime,auto), --runs N (default 5), --threads T
(default 0), --image (default models/samples/dog.jpg), --timeout S (per run, default 60),
--write-doc [FILE] (replace the "## Cold start (issue 5)" section of FILE, default
docs/benchmarks.md, or append it).
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdoc  # noqa: E402  (sh(), host_line(), built(), head(), load_line(), replace_section())

REPO = benchdoc.REPO
HEADING = "## Cold start (issue 5)"
CAMERA = "door"
TARGET_MS = 1000.0
LOG_FILTER = "warn,tract_onnx=error,cvedge=info"


# --------------------------------------------------------------------------------------
# messages (broker and subscriber: benchdoc.start_broker, benchdoc.start_subscriber)


def first_prediction_ns(sub_path, device, wait_s=3.0):
    """Arrival time (Unix ns) of the first prediction message of `device`, waiting up to wait_s
    for it to show up in the subscriber's file; None if it never does."""
    topic = "cvedge/%s/%s/predictions" % (device, CAMERA)
    deadline = time.time() + wait_s
    while True:
        with open(sub_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1] == topic:
                    sec, _, frac = parts[0].partition(".")
                    return int(sec) * 10**9 + int((frac + "000000000")[:9])
        if time.time() > deadline:
            return None
        time.sleep(0.02)


# --------------------------------------------------------------------------------------
# one cvedge run


CONFIG = """model = "{model}"
device = "{device}"
engine = "{engine}"
threads = {threads}
state_dir = "{state}"
data_dir = "{data}"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[[camera]]
name = "{camera}"
source = "file:{image}"
"""


class Unavailable(Exception):
    """The engine cannot run here (onnxruntime's library missing): the row says so."""


def run_once(args, cfg, tmp, port, sub_path, device):
    """One cold start of `cvedge run`; returns a dict of times (ms after spawn), RSS and CPU."""
    work = os.path.join(tmp, device)
    os.makedirs(work)
    conf = os.path.join(work, "cvedge.toml")
    with open(conf, "w") as f:
        f.write(CONFIG.format(model=cfg["model"], device=device, engine=cfg["engine"], threads=args.threads,
                              state=os.path.join(work, "state"), data=os.path.join(work, "data"),
                              port=port, camera=CAMERA, image=args.image_abs))
    cmd = [args.cvedge, "run", "--config", conf, "--max-frames", "1"]
    env = dict(os.environ, RUST_LOG=LOG_FILTER)
    lines = []  # (arrival ns, text)

    t_spawn = time.time_ns()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)

    def read_stderr():
        for line in proc.stderr:
            lines.append((time.time_ns(), line.rstrip("\n")))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    watchdog = threading.Timer(args.timeout, proc.kill)
    watchdog.start()
    _, status, usage = os.wait4(proc.pid, 0)
    t_exit = time.time_ns()
    watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    reader.join()
    proc.stderr.close()

    stderr = "\n".join(text for _, text in lines)
    if proc.returncode != 0:
        if cfg["engine"] == "onnxruntime" and "onnxruntime" in stderr:
            raise Unavailable(stderr.strip().splitlines()[-1] if stderr.strip() else "exit %d" % proc.returncode)
        timed_out = " (killed after %g s)" % args.timeout if proc.returncode == -9 else ""
        raise SystemExit("FATAL: `%s` exited %d%s:\n%s" % (" ".join(cmd), proc.returncode, timed_out, stderr[-3000:]))

    ms = lambda t: (t - t_spawn) / 1e6 if t is not None else None  # noqa: E731
    first = first_prediction_ns(sub_path, device)
    if first is None:
        raise SystemExit("FATAL: no prediction message from %s reached the subscriber; cvedge said:\n%s"
                         % (device, stderr[-3000:]))

    def at(pattern):
        return next(((t, m) for t, text in lines for m in [re.search(pattern, text)] if m), (None, None))

    t_engine, m_engine = at(r"engine: (\S+)")
    t_stats, m_stats = at(r'^\{"classified".*\}$')
    return {
        "first_ms": ms(first),
        "exit_ms": ms(t_exit),
        "rss_mb": usage.ru_maxrss / 1024.0,  # kB on Linux
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "chosen": m_engine.group(1) if m_engine else "?",
        "loaded_ms": ms(t_engine),
        "mqtt_ms": ms(at(r"mqtt: connected")[0]),
        "camera_ms": ms(at(r"camera %s online" % CAMERA)[0]),
        "classified_ms": ms(t_stats),
        "stats": json.loads(m_stats.group(0)) if m_stats else None,
        "log": [("%8.1f ms  %s" % (ms(t), text)) for t, text in lines],
    }


# --------------------------------------------------------------------------------------
# report


def fmt(x):
    if x is None:
        return "?"
    return "%.0f" % x if abs(x) >= 100 else "%.1f" % x


def med(runs, key):
    vals = [r[key] for r in runs if r[key] is not None]
    return statistics.median(vals) if vals else None


def engine_label(cfg):
    if cfg["engine"] != "auto" or not cfg["runs"]:
        return cfg["engine"]
    chosen = sorted({r["chosen"] for r in cfg["runs"]})
    return "auto (chose %s)" % " / ".join(chosen)


def tables(configs):
    """(main table, phases table) in markdown."""
    T = ["| model | engine | precision | first prediction median ms | first prediction max ms | exit median ms "
         "| exit max ms | peak RSS MB |",
         "|---|---|---|--:|--:|--:|--:|--:|"]
    P = ["| model | engine | precision | model loaded | MQTT connected | camera online | first classified "
         "| first prediction received | exit | CPU s (user + sys) |",
         "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for c in configs:
        head = "| %s | %s | %s |" % (c["model_label"], engine_label(c), c["precision"])
        runs = c["runs"]
        if c.get("unavailable"):
            T.append(head + " not available | | | | |")
            P.append(head + " not available | | | | | | |")
            continue
        T.append(head + " %s | %s | %s | %s | %.1f |" % (
            fmt(med(runs, "first_ms")), fmt(max(r["first_ms"] for r in runs)),
            fmt(med(runs, "exit_ms")), fmt(max(r["exit_ms"] for r in runs)), max(r["rss_mb"] for r in runs)))
        P.append(head + " %s | %s | %s | %s | %s | %s | %.2f |" % tuple(
            [fmt(med(runs, k)) for k in ("loaded_ms", "mqtt_ms", "camera_ms", "classified_ms", "first_ms", "exit_ms")]
            + [med(runs, "cpu_s")]))
    return "\n".join(T), "\n".join(P)


def target_lines(configs, engines):
    out = []
    for engine in engines:
        rows = [c for c in configs if c["engine"] == engine]
        measured = [c for c in rows if not c.get("unavailable")]
        if not measured:
            out.append("- **%s**: not available here (%s)" % (engine, rows[0]["unavailable"] if rows else "not run"))
            continue
        parts, ok = [], True
        for c in measured:
            m = med(c["runs"], "first_ms")
            ok = ok and m < TARGET_MS
            parts.append("%s %s ms median, %s ms max" % (c["precision"], fmt(m), fmt(max(r["first_ms"] for r in c["runs"]))))
        skipped = [c["precision"] for c in rows if c.get("unavailable")]
        out.append("- **%s**: first prediction under 1 s (median) %s (%s%s)" % (
            engine, "**met**" if ok else "**NOT met**", "; ".join(parts),
            "; %s not available" % ", ".join(skipped) if skipped else ""))
    return out


SECTION = """{heading}

How long the daemon takes from a cold start to its first published prediction (target: under 1 s
on x86): `cvedge run --config FILE --max-frames 1` spawned with a fresh state folder, the engine
chosen in the TOML file (`engine = "tract" | "onnxruntime" | "auto"`), one camera replaying
`{image}`, a private mosquitto on loopback and `mosquitto_sub -q 1` stamping arrivals. **first
prediction** = arrival of the first `.../predictions` message at the subscriber - spawn time;
**exit** = the process reaped - spawn time (includes up to 100 ms of the daemon's stop-flag poll
and its clean shutdown); **peak RSS** = ru_maxrss of that process (os.wait4). Each configuration
had one unmeasured warm-up run (page cache) and {runs} measured runs, interleaved round-robin.
`scripts/bench_coldstart.py`'s docstring says exactly what is timed.

Reproduce (from the repo root):

```sh
cargo build --release
{cmd}
```

{report}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cvedge", default=os.path.join("target", "release", "cvedge"), help="the binary (default target/release/cvedge)")
    ap.add_argument("--model", default="models/demo", help="fp32 export folder (default models/demo)")
    ap.add_argument("--int8", metavar="DIR", help="also an int8 export folder (e.g. cvedge quantize's output)")
    ap.add_argument("--engines", default="tract,onnxruntime,auto", help="comma-separated (default tract,onnxruntime,auto)")
    ap.add_argument("--runs", type=int, default=5, help="measured runs per configuration (default 5)")
    ap.add_argument("--threads", type=int, default=0, help="`threads` in the config (default 0 = one per core)")
    ap.add_argument("--image", default="models/samples/dog.jpg", help="the JPEG the file camera loops")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a run is killed (default 60)")
    ap.add_argument("--write-doc", nargs="?", const="docs/benchmarks.md", metavar="FILE",
                    help='replace the "%s" section of FILE (default docs/benchmarks.md)' % HEADING)
    args = ap.parse_args()

    def repo_path(p):
        return p if os.path.isabs(p) else os.path.join(REPO, p)

    args.cvedge = repo_path(args.cvedge)
    if not os.path.isfile(args.cvedge):
        raise SystemExit("FATAL: %s not found: build it with cargo build --release (or give --cvedge PATH)" % args.cvedge)
    for tool in ("mosquitto", "mosquitto_sub", "mosquitto_pub"):
        if not shutil.which(tool):
            raise SystemExit("FATAL: %s not found (apt-get install mosquitto mosquitto-clients)" % tool)
    args.image_abs = repo_path(args.image)
    if not os.path.isfile(args.image_abs):
        raise SystemExit("FATAL: image %s not found" % args.image)
    if args.runs < 1:
        raise SystemExit("FATAL: --runs must be at least 1")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ("tract", "onnxruntime", "auto"):
            raise SystemExit("FATAL: unknown engine %r (tract, onnxruntime, auto)" % e)
    models = [(args.model, "fp32")] + ([(args.int8, "int8")] if args.int8 else [])
    for path, _ in models:
        if not os.path.exists(repo_path(path)):
            raise SystemExit("FATAL: model %s not found" % path)
    configs = [{"model": repo_path(path), "model_label": path.rstrip("/"), "precision": prec, "engine": e, "runs": []}
               for path, prec in models for e in engines]

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    warm_logs = []
    with tempfile.TemporaryDirectory(prefix="cvedge-coldstart-") as tmp:
        broker, port, _ = benchdoc.start_broker(tmp)
        sub_path = os.path.join(tmp, "sub.txt")
        sub = None
        try:
            sub = benchdoc.start_subscriber(port, sub_path, "cvedge-coldstart-sub", "%U %t")
            for i, c in enumerate(configs):
                log("warm-up: %s %s ..." % (c["model_label"], c["engine"]))
                try:
                    r = run_once(args, c, tmp, port, sub_path, "cs%dw" % i)
                    warm_logs.append((c, r))
                except Unavailable as e:
                    c["unavailable"] = str(e)
                    log("  not available: %s" % e)
            live = [c for c in configs if not c.get("unavailable")]
            for k in range(args.runs):
                log("round %d/%d ..." % (k + 1, args.runs))
                for c in live:
                    i = configs.index(c)
                    c["runs"].append(run_once(args, c, tmp, port, sub_path, "cs%dr%d" % (i, k)))
        finally:
            if sub is not None:
                sub.terminate()
                sub.wait()
            broker.terminate()
            broker.wait()
    load_after = os.getloadavg()

    main_table, phase_table = tables(configs)
    targets = target_lines(configs, engines)
    version = benchdoc.sh([args.cvedge, "--version"])
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()[:1]
    machine = "\n".join([
        benchdoc.host_line(),
        "- %s, binary built %s, HEAD %s" % (version, benchdoc.built(args.cvedge), benchdoc.head()),
        "- broker: %s on 127.0.0.1 (same machine); `threads = %d` in the config" % (
            mosq[0] if mosq else "mosquitto", args.threads),
        benchdoc.load_line(load_before, load_after),
        "- run: %s UTC, %d measured runs per configuration" % (started.strftime("%Y-%m-%d %H:%M"), args.runs),
    ])
    report = "\n\n".join([
        "Time after spawn, ms (%d run%s each; peak RSS is the max over them):" % (args.runs, "" if args.runs == 1 else "s"),
        main_table,
        "Where the time goes: median ms after spawn at which each step was seen (stderr lines stamped on "
        "arrival: `engine: ...` is logged once the model is loaded, and for auto once both engines "
        "have been tried on a check photo; first classified = the `--max-frames` statistics line, printed by "
        "a thread that checks the counter every 5 ms, so it can come after the message is already out):",
        phase_table,
        "Target, first prediction under 1 s:\n" + "\n".join(targets),
        "Machine:\n" + machine,
    ])
    print(report)
    log("\nstderr of the warm-up runs (ms after spawn):")
    for c, r in warm_logs:
        log("  %s %s:" % (c["model_label"], c["engine"]))
        for line in r["log"]:
            log("    " + line[:200])

    if args.write_doc:
        cmd = ["python3", "scripts/bench_coldstart.py"]
        if args.model != "models/demo":
            cmd += ["--model", args.model]
        if args.image != "models/samples/dog.jpg":
            cmd += ["--image", args.image]
        if args.int8:
            cmd += ["--int8", args.int8]
        if args.runs != 5:
            cmd += ["--runs", str(args.runs)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.engines != "tract,onnxruntime,auto":
            cmd += ["--engines", args.engines]
        cmd += ["--write-doc"] + ([args.write_doc] if args.write_doc != "docs/benchmarks.md" else [])
        benchdoc.replace_section(args.write_doc, HEADING, SECTION.format(
            heading=HEADING, image=args.image, runs=args.runs, cmd=" ".join(shlex.quote(a) for a in cmd), report=report))


if __name__ == "__main__":
    main()
