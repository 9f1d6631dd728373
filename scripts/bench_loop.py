"""Throughput, latency and memory of the `cvedge run` daemon loop (capture -> latest-frame slot ->
decode -> preprocess -> inference -> publish over MQTT) on the bundled demo model (models/demo),
against inference alone, measured in one run.

What it measures
----------------
* Broker and subscriber: a private mosquitto on a free loopback port (`listener PORT 127.0.0.1`,
  `allow_anonymous true`, no queue limit, no persistence), and `mosquitto_sub -q 1 -F '%U %t %p'
  -t 'cvedge/#'`, which stamps every message with its arrival time (Unix ns).  Every prediction
  message (`cvedge/bench/door/predictions`: JSON with `seq`, `latency_ms`, `frame_time`) is kept.
* Full loop, two variants, each a fresh `--state-dir` (so `seq` starts at 1), one JPEG
  (models/samples/dog.jpg, 640x480, copied into a temp folder) replayed as camera `door`:
  - **camera rate**: `cvedge run --model models/demo --source door=file:<tmp>/dog.jpg
    --mqtt mqtt://127.0.0.1:PORT --device bench --state-dir <tmp> --max-frames N30`: a looping
    file source is paced at 30 fps by default, like a camera; frames the engine is too slow for
    are replaced in the one-frame slot (counted as `skipped`).
  - **saturated**: the same through a TOML file with `[[camera]] fps = 200, interval_s = 0`, so a
    new frame is always waiting and the classification thread never idles: its fps is the loop's
    own per-frame cost.  N (default 10,000) frames, for the memory trend.
  `--max-frames N` makes cvedge stop after N classified frames and print one JSON line
  (`classified`, `skipped`, `seconds`, `fps`; timed from after the model is loaded) on stderr;
  fps and ms/frame (= 1000 / fps) come from it.  Latency: `latency_ms` in each message is
  capture -> classified (the capture time is taken after the file is read, so it covers decode,
  preprocess, inference, and any wait in the slot; it is computed just before the message is
  serialised and written to the outbox); "delivered" is the subscriber's arrival time minus
  `frame_time` (1 ms resolution), so it adds the outbox write, the MQTT hop and the broker.
  Delivery: messages received vs classified, missing / duplicated / out-of-order `seq`s.
  Memory: VmRSS / VmHWM of the cvedge process from /proc/PID/status every second; each sample is
  placed at the number of predictions the subscriber had received by then, and RSS is reported at
  1k, 5k and 10k frames, with a least-squares slope over the samples past the first 1,000 frames.
  CPU: user + system seconds of the cvedge process (getrusage of the reaped child), minus the CPU
  of a bare model load (`cvedge inspect`, median of 5), per classified frame.
* Inference alone, in the same run (before, between and after the two loop runs: pooled, and
  reported apart so drift shows): `cvedge predict --model models/demo --timings` with the same
  JPEG repeated (warm-up + N times) in ONE process, parsed as scripts/bench_predict.py does
  (decode, preprocess, inference ms per image, 0.1 ms resolution).
* "Loop adds X% to inference": the saturated loop's median gap between consecutive prediction
  messages (subscriber arrival times) over the median inference ms: medians on both sides, since
  bursts of load from other work on a shared host move means far more.  The mean version
  (1000 / fps over the mean inference ms) is given too.

Reproduce (from the repo root, after `cargo build --release`; needs mosquitto and
mosquitto_sub on PATH, plus scripts/requirements.txt for the shared helpers):

    python3 scripts/bench_loop.py --out docs/benchmarks.md

`--out` replaces this script's section of that file (from its heading to the end, or to the next
`## ` heading not its own) or appends it; the sections before it are left as they are.
Options: --frames (saturated run, default 10000), --frames-camera (30 fps run, default 2000),
--fps-high (default 200), --n / --warmup (predict repeats, default 300 / 20), --image, --binary,
--model, --out.
"""
import argparse
import datetime
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdoc  # noqa: E402  (replace_section())
import bench_predict as bp  # noqa: E402  (machine_info(), run_cvedge(), schedule(), fmt(), LINE)

REPO = bp.REPO
CMD = "python3 scripts/bench_loop.py --out docs/benchmarks.md"
HEADING = "## Daemon loop (`cvedge run`) vs inference alone"
DEVICE = "bench"
CAMERA = "door"
CHECKPOINTS = (1000, 5000, 10000)


# --------------------------------------------------------------------------------------
# messages (broker and subscriber: benchdoc.start_broker, benchdoc.start_subscriber)


def read_messages(path):
    """[(arrival unix s, payload dict)] of the prediction messages, in arrival order."""
    topic = "cvedge/%s/%s/predictions" % (DEVICE, CAMERA)
    out = []
    for line in open(path, encoding="utf-8", errors="replace"):
        parts = line.rstrip("\n").split(" ", 2)
        if len(parts) == 3 and parts[1] == topic:
            out.append((float(parts[0]), json.loads(parts[2])))
    return out


def frame_time(s):
    """`2026-11-22T01:11:53.258Z` -> unix seconds."""
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


# --------------------------------------------------------------------------------------
# cvedge


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_cpu_s(binary, model, reps=5):
    """CPU seconds of a bare model load (`cvedge inspect`), median of reps."""
    out = []
    for _ in range(reps):
        c0 = children_cpu()
        r = subprocess.run([binary, "inspect", "--model", model], capture_output=True, text=True, cwd=REPO)
        out.append(children_cpu() - c0)
        if r.returncode != 0:
            raise SystemExit("FATAL: cvedge inspect failed:\n" + r.stderr)
    return statistics.median(out)


def proc_status(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            d = dict(line.split(":", 1) for line in f if ":" in line)
        return int(d["VmRSS"].split()[0]), int(d["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


def run_loop(binary, tmp, port, name, args_tail, config_text=None, timeout=3600):
    """One `cvedge run ... --max-frames N`: returns a dict of everything measured."""
    state = os.path.join(tmp, "state-" + name)
    sub_out = os.path.join(tmp, "sub-%s.txt" % name)
    cmd = [binary, "run"]
    if config_text is not None:
        conf = os.path.join(tmp, "%s.toml" % name)
        with open(conf, "w") as f:
            f.write(config_text.replace("@STATE@", state))
        cmd += ["--config", conf]
    else:
        cmd += ["--state-dir", state]
    cmd += args_tail
    sub = benchdoc.start_subscriber(port, sub_out, "cvedge-bench-sub", "%U %t %p")
    err_path = os.path.join(tmp, "cvedge-%s.err" % name)
    try:
        cpu0 = children_cpu()
        t_start = time.time()
        with open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        samples = []  # (unix s, VmRSS kB, VmHWM kB)
        while proc.poll() is None:
            s = proc_status(proc.pid)
            if s:
                samples.append((time.time(), s[0], s[1]))
            if time.time() - t_start > timeout:
                proc.kill()
                raise SystemExit("FATAL: %s did not stop within %d s" % (name, timeout))
            time.sleep(1.0)
        cpu = children_cpu() - cpu0
        wall = time.time() - t_start
        time.sleep(1.0)  # the last messages reach the subscriber
    finally:
        sub.terminate()
        sub.wait()
    stderr = open(err_path).read()
    if proc.returncode != 0:
        raise SystemExit("FATAL: %s exited %d:\n%s" % (" ".join(cmd), proc.returncode, stderr[-3000:]))
    stats_line = next((json.loads(l) for l in stderr.splitlines() if l.startswith("{\"classified\"")), None)
    if stats_line is None:
        raise SystemExit("FATAL: no statistics line from %s:\n%s" % (name, stderr[-3000:]))
    msgs = read_messages(sub_out)
    outbox = os.path.join(state, "outbox")
    left = [f for f in os.listdir(outbox) if f.endswith(".msg")] if os.path.isdir(outbox) else []
    return {"name": name, "cmd": cmd, "stats": stats_line, "msgs": msgs, "samples": samples,
            "cpu": cpu, "wall": wall, "outbox_left": len(left),
            # Everything else cvedge said, but the expected shutdown notice.
            "warnings": [l for l in stderr.splitlines() if l.strip() and not l.startswith("{\"classified\"")
                         and not l.endswith("camera %s offline" % CAMERA)]}


def run_predict(binary, model, image, warmup, n):
    sched = bp.schedule([("img", [image])], warmup, n)
    c0 = children_cpu()
    per_path, _ = bp.run_cvedge(binary, model, sched)
    return per_path[image], children_cpu() - c0, len(sched)


# --------------------------------------------------------------------------------------
# report


def pct(v, q):
    return float(np.percentile(v, q)) if len(v) else float("nan")


def delivery(run):
    seqs = [m["seq"] for _, m in run["msgs"]]
    uniq = set(seqs)
    top = max(seqs) if seqs else 0
    missing = sorted(set(range(1, top + 1)) - uniq)
    ooo = sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
    return {"received": len(seqs), "unique": len(uniq), "max_seq": top, "missing": missing,
            "duplicates": len(seqs) - len(uniq), "out_of_order": ooo}


def latencies(run):
    lat = [m["latency_ms"] for _, m in run["msgs"]]
    dlv = [(t - frame_time(m["frame_time"])) * 1e3 for t, m in run["msgs"]]
    return lat, dlv


def rss_at_frames(run):
    """[(frames received at sample time, VmRSS kB, VmHWM kB)] per sample."""
    arrivals = sorted(t for t, _ in run["msgs"])
    return [(int(np.searchsorted(arrivals, t, side="right")), rss, hwm) for t, rss, hwm in run["samples"]]


def rss_slope(points, after=1000):
    pts = [(f, r) for f, r, _ in points if f >= after]
    if len(pts) < 3 or pts[-1][0] == pts[0][0]:
        return float("nan")
    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    return float(np.polyfit(x, y, 1)[0]) * 1000  # kB per 1,000 frames


def mb(kb):
    return "%.1f" % (kb / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=10000, help="frames of the saturated run (default 10000)")
    ap.add_argument("--frames-camera", type=int, default=2000, help="frames of the 30 fps run (default 2000)")
    ap.add_argument("--fps-high", type=float, default=200.0, help="source rate of the saturated run (default 200)")
    ap.add_argument("--n", type=int, default=300, help="counted predict repeats per block; 3 blocks (default 300)")
    ap.add_argument("--warmup", type=int, default=20, help="discarded predict warm-up repeats (default 20)")
    ap.add_argument("--image", default="models/samples/dog.jpg")
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "cvedge"))
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--out", help="also write this section into this markdown file (e.g. docs/benchmarks.md)")
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        raise SystemExit("FATAL: %s not found: run `cargo build --release` first" % args.binary)
    for tool in ("mosquitto", "mosquitto_sub", "mosquitto_pub"):
        if not shutil.which(tool):
            raise SystemExit("FATAL: %s not found (apt-get install mosquitto mosquitto-clients)" % tool)
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="cvedge-bench-loop-") as tmp:
        frames = os.path.join(tmp, "frames")
        os.makedirs(frames)
        image = os.path.join(frames, os.path.basename(args.image))
        shutil.copy(os.path.join(REPO, args.image), image)
        from PIL import Image
        with Image.open(image) as im:
            size = "%dx%d" % im.size
        broker, port, broker_log = benchdoc.start_broker(tmp, "max_queued_messages 0\n")
        try:
            log("model load CPU (inspect x5) ...")
            load_cpu = load_cpu_s(args.binary, args.model)
            log("inference alone (predict, %d + %d repeats) ..." % (args.warmup, args.n))
            pre_rows, pre_cpu, pre_count = run_predict(args.binary, args.model, image, args.warmup, args.n)
            mqtt = "mqtt://127.0.0.1:%d" % port
            log("loop at the camera rate (%d frames) ..." % args.frames_camera)
            cam = run_loop(args.binary, tmp, port, "camera",
                           ["--model", args.model, "--source", "%s=file:%s" % (CAMERA, image), "--mqtt", mqtt,
                            "--device", DEVICE, "--max-frames", str(args.frames_camera)])
            log("inference alone, between the loops (predict) ...")
            mid_rows, mid_cpu, mid_count = run_predict(args.binary, args.model, image, args.warmup, args.n)
            log("loop saturated (fps %g, %d frames, ~%.0f min) ..." % (args.fps_high, args.frames, args.frames / 33 / 60))
            toml = ('model = "%s"\ndevice = "%s"\nstate_dir = "@STATE@"\n\n[mqtt]\nurl = "%s"\n\n'
                    '[[camera]]\nname = "%s"\nsource = "file:%s"\nfps = %s\ninterval_s = 0\n'
                    % (args.model, DEVICE, mqtt, CAMERA, frames, float(args.fps_high)))
            sat = run_loop(args.binary, tmp, port, "saturated", ["--max-frames", str(args.frames)], config_text=toml)
            log("inference alone again (predict) ...")
            post_rows, post_cpu, post_count = run_predict(args.binary, args.model, image, args.warmup, args.n)
        finally:
            broker.terminate()
            broker.wait()
        broker_text = open(broker_log).read()
    load_after = os.getloadavg()
    info = bp.machine_info(args.binary)
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()[:1]

    # ---- inference alone
    rows = pre_rows + mid_rows + post_rows
    col = lambda rs, k: [r[k] for r in rs]  # noqa: E731
    inf, tot = col(rows, "inference"), col(rows, "total")
    inf_mean, inf_med = statistics.fmean(inf), statistics.median(inf)
    tot_mean = statistics.fmean(tot)
    predict_cpu_ms = statistics.fmean([(c - load_cpu) / k for c, k in
                                       ((pre_cpu, pre_count), (mid_cpu, mid_count), (post_cpu, post_count))]) * 1e3

    # ---- loops
    runs = []
    for run, label in ((cam, "camera rate (file source paced at 30 fps)"),
                       (sat, "saturated (fps %g, `interval_s = 0`)" % args.fps_high)):
        st = run["stats"]
        d = delivery(run)
        lat, dlv = latencies(run)
        ms_frame = 1e3 * st["seconds"] / st["classified"]
        arrivals = sorted(t for t, _ in run["msgs"])
        gap = statistics.median(np.diff(arrivals) * 1e3) if len(arrivals) > 2 else float("nan")
        runs.append({"run": run, "label": label, "st": st, "d": d, "lat": lat, "dlv": dlv, "ms": ms_frame, "gap": gap,
                     "cpu_ms": (run["cpu"] - load_cpu) / st["classified"] * 1e3,
                     "pts": rss_at_frames(run)})

    T = []
    T.append("| | frames | fps | ms / frame: mean (1000 / fps) | ms / frame: median gap | vs inference alone: mean / median "
             "(%s / %s ms) | CPU ms / frame | latency_ms median / p90 / p99 / max | delivered ms median / p90 / p99 / max "
             "| received / classified | skipped |" % (bp.fmt(inf_mean), bp.fmt(inf_med)))
    T.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        st, d = r["st"], r["d"]
        # At the camera rate the source sets the pace: a ratio to inference would not be the loop's cost.
        ratio = ("%+.1f%% / %+.1f%%" % ((r["ms"] / inf_mean - 1) * 100, (r["gap"] / inf_med - 1) * 100)
                 if r["run"] is sat else "(paced by the source)")
        T.append("| loop, %s | %d | %.1f | %s | %s | %s | %s | %s / %s / %s / %s | %s / %s / %s / %s | %d / %d | %d |" % (
            r["label"], st["classified"], st["fps"], bp.fmt(r["ms"]), bp.fmt(r["gap"]), ratio, bp.fmt(r["cpu_ms"]),
            bp.fmt(statistics.median(r["lat"])), bp.fmt(pct(r["lat"], 90)), bp.fmt(pct(r["lat"], 99)), bp.fmt(max(r["lat"])),
            bp.fmt(statistics.median(r["dlv"])), bp.fmt(pct(r["dlv"], 90)), bp.fmt(pct(r["dlv"], 99)), bp.fmt(max(r["dlv"])),
            d["received"], st["classified"], st["skipped"]))
    tot_med = statistics.median(tot)
    T.append("| `predict`: decode + preprocess + inference | %d | %.1f | %s | %s | %+.1f%% / %+.1f%% | %s | | | | |" % (
        len(rows), 1e3 / tot_mean, bp.fmt(tot_mean), bp.fmt(tot_med), (tot_mean / inf_mean - 1) * 100,
        (tot_med / inf_med - 1) * 100, bp.fmt(predict_cpu_ms)))
    T.append("| **inference alone** (`predict --timings`) | %d | %.1f | %s | %s | | | p90 %s, p99 %s, max %s | | | |" % (
        len(rows), 1e3 / inf_mean, bp.fmt(inf_mean), bp.fmt(inf_med), bp.fmt(pct(inf, 90)), bp.fmt(pct(inf, 99)), bp.fmt(max(inf))))
    table = "\n".join(T)

    satr = runs[1]
    stages = "; ".join("%s %s / %s" % (k, bp.fmt(statistics.fmean(col(rs, k))), bp.fmt(statistics.median(col(rs, k))))
                       for rs in (rows,) for k in ("decode", "preprocess", "inference"))
    drift = "mean / median inference ms before the loops %s, between them %s, after them %s" % tuple(
        "%s / %s" % (bp.fmt(statistics.fmean(col(rs, "inference"))), bp.fmt(statistics.median(col(rs, "inference"))))
        for rs in (pre_rows, mid_rows, post_rows))
    headline = ("**Result:** saturated, the loop takes %s ms per frame (median gap between messages) against "
                "%s ms of inference alone (median): it adds **%+.1f%%** to inference, of which decode + "
                "preprocess are %+.1f%% (`predict` median total %s ms) and the rest (slot, sequence numbers, "
                "JSON, the on-disk outbox, MQTT) %+.1f%%. With means (1000 / fps = %s ms against %s ms, which "
                "bursts of load on the host move more): %+.1f%%. Target: under 10%%."
                % (bp.fmt(satr["gap"]), bp.fmt(inf_med), (satr["gap"] / inf_med - 1) * 100,
                   (tot_med / inf_med - 1) * 100, bp.fmt(tot_med), (satr["gap"] / tot_med - 1) * 100,
                   bp.fmt(satr["ms"]), bp.fmt(inf_mean), (satr["ms"] / inf_mean - 1) * 100))

    # ---- memory
    R = ["| run | frames at sample | VmRSS MB | VmHWM MB |", "|---|--:|--:|--:|"]
    for r in runs:
        pts = [p for p in r["pts"] if p[0] > 0]
        if not pts:
            continue
        marks = [c for c in CHECKPOINTS if c <= r["st"]["classified"]] or [r["st"]["classified"]]
        shown = []
        for c in [pts[0][0]] + marks:
            p = min(pts, key=lambda p: abs(p[0] - c))
            if p not in shown:
                shown.append(p)
        for f, rss, hwm in shown:
            R.append("| %s | %d | %s | %s |" % (r["label"].split(" (")[0], f, mb(rss), mb(hwm)))
    rss_table = "\n".join(R)
    sat_pts = satr["pts"]
    slope = rss_slope(sat_pts)
    steady = [rss for f, rss, _ in sat_pts if f >= 1000]
    mem_note = ("Saturated run: %d samples (one a second); past 1,000 frames VmRSS ranged %s-%s MB, least-squares "
                "slope %+.1f kB per 1,000 frames; peak (VmHWM) %s MB. Outbox files left after each run: %s."
                % (len(sat_pts), mb(min(steady)) if steady else "?", mb(max(steady)) if steady else "?", slope,
                   mb(max(h for _, _, h in sat_pts)) if sat_pts else "?",
                   ", ".join("%s %d" % (r["label"].split(" (")[0], r["run"]["outbox_left"]) for r in runs)))

    # ---- delivery and anomalies
    notes = []
    for r in runs:
        d, st = r["d"], r["st"]
        miss = d["missing"]
        notes.append("- %s: %d prediction messages received for %d classified (stats line); seq 1..%d, %d missing%s, "
                     "%d duplicate(s), %d out of order; cvedge ran %.1f s wall (including model load and shutdown)." % (
                         r["label"].split(" (")[0], d["received"], st["classified"], d["max_seq"], len(miss),
                         (" (%s)" % ", ".join(map(str, miss[:10])) + ("..." if len(miss) > 10 else "")) if miss else "",
                         d["duplicates"], d["out_of_order"], r["run"]["wall"]))
        slow = sorted(((l, m["seq"]) for l, (_, m) in zip(r["lat"], r["run"]["msgs"])), reverse=True)[:5]
        notes.append("  slowest latency_ms: %s" % ", ".join("%s (seq %d)" % (bp.fmt(l), s) for l, s in slow))
        for w in r["run"]["warnings"][:5]:
            notes.append("  stderr: `%s`" % w[:200])
    connects = len(re.findall(r"New client connected .* as cvedge-%s \(" % DEVICE, broker_text))
    notes.append("- cvedge connected to the broker %d time(s) over %d runs (more would mean reconnects)." % (connects, len(runs)))

    machine = "\n".join([
        "- CPU: %s, `nproc` = %s (threads per core: %s), Linux %s" % (info["cpu"], info["nproc"], info["threads_per_core"], info["kernel"]),
        "- %s (tract %s, %s), binary built %s, HEAD %s" % (info["cvedge"], info["tract"], info["rustc"], info["built"], info["git"]),
        "- broker: %s on 127.0.0.1 (same machine); subscriber `mosquitto_sub -q 1`" % (mosq[0] if mosq else "mosquitto"),
        "- load average (1/5/15 min) at start %.2f/%.2f/%.2f, at end %.2f/%.2f/%.2f" % (load_before + load_after),
        "- run: %s UTC; image %s (%s); predict: 3 blocks (before, between, after the loops) of %d warm-up + %d counted repeats"
        % (started.strftime("%Y-%m-%d %H:%M"), os.path.basename(args.image), size, args.warmup, args.n),
    ])
    report = "\n\n".join([
        "Per frame, one %s JPEG (`%s`) replayed as camera `%s`; inference alone pooled over %d `predict` "
        "repeats (%s):" % (size, args.image, CAMERA, len(rows), drift),
        table,
        headline,
        "`predict` stages, mean / median ms: " + stages + ".",
        "Memory of the cvedge process (VmRSS sampled every second, placed at the number of predictions "
        "received by then):",
        rss_table,
        mem_note,
        "Delivery and outliers:\n" + "\n".join(notes),
        "Machine:\n" + machine,
    ])
    print(report)

    if args.out:
        benchdoc.replace_section(args.out, HEADING, SECTION.format(heading=HEADING, cmd=CMD, model=args.model, fps=args.fps_high, report=report))


SECTION = """{heading}

How fast the daemon's whole loop runs on the bundled model ({model}), next to inference alone:
`cvedge run` replays one JPEG as a camera (capture thread -> one-frame latest-frame slot ->
classification thread: decode, preprocess, inference, sequence number, JSON, on-disk outbox, MQTT
QoS 1 to a local mosquitto) and stops after N frames (hidden flag `--max-frames N`, which prints
fps on stderr); a subscriber records every prediction message. Two loop runs: the file source at
its default 30 fps (a camera's rate; frames the engine has no time for are replaced in the slot and
counted as skipped), and **saturated** (source at {fps:g} fps, `interval_s = 0`: a frame is always
waiting, so fps measures the loop's own cost per frame, which is what is compared with inference).
Inference alone is `cvedge predict --timings` on the same JPEG, in the same run.

Reproduce (from the repo root; `scripts/bench_loop.py`'s docstring says exactly what is measured):

```sh
cargo build --release
{cmd}
```

Columns: **ms / frame: mean** = 1000 / fps, compared with mean inference; **median gap** = the
median time between consecutive prediction messages at the subscriber, compared with median
inference (robust to bursts of load from other work on the host, so the headline uses it; in the
camera-rate run it is the source's pace, not the loop's cost);
**latency_ms** = the message's own field, capture -> classified (covers decode, preprocess,
inference and any wait in the slot); **delivered** = subscriber arrival - `frame_time` (adds the
outbox write, the MQTT hop and the broker; `frame_time` has 1 ms resolution); **CPU ms / frame** =
the process's user + system time, minus a bare model load, per frame (all threads: capture, MQTT).
**received / classified**: the stats line is printed when the counter reaches N, and the daemon's
main loop (which polls its stop flag every 100 ms) then stops the cameras, so the classification
thread may finish a few more frames (up to about 4 at 30 fps); they are published too. What
matters is that no `seq` is missing.
The same noise caveat as above applies: a shared 2-core VM, where the broker, the subscriber and
the capture thread share the second core. Compare the ratios within one run, not milliseconds
across runs.

{report}
"""


if __name__ == "__main__":
    main()
