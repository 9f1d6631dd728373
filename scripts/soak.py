#!/usr/bin/env python3
"""Soak: `cvedge run` for a long time at a steady frame rate, sampling what would grow.

The daemon classifies the bundled photos (file source, looped) at --fps on the bundled demo model,
publishes to a real mosquitto on loopback with a QoS 1 subscriber, and serves its HTTP API. Every
--sample-s seconds the script reads the daemon's resident memory, peak memory, threads and open
file descriptors from /proc, its counters from /metrics, posts one photo to /image, and every tenth
sample sends one capture command (so the saver's path is exercised too).

At the end it reports whether resident memory stayed flat after warm-up, whether the descriptor
count stayed the same at every sample after the first, and whether every `seq` the daemon produced
(from 1: the state folder is new) up to the last one received reached the subscriber.

  scripts/soak.py --minutes 60 --fps 10 --json soak.json --markdown soak.md

Exit status: 1 if the daemon died, a prediction was lost, or memory/descriptors moved beyond the
bounds below; timings are reported, never judged.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchdoc import free_port, start_broker, start_subscriber  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Flat means: resident memory at the end within this much of the first warm sample (allocator
# noise and one-off caches are a few MB), and the descriptor count the same at every sample after
# the first (the first is taken as the daemon starts, before its connections are open).
RSS_GROWTH_LIMIT_MB = 8.0
WARMUP_MINUTES = 5
PREDICTIONS = "cvedge/soak/samples/predictions"


def find_binary(given):
    for path in [given] if given else ["target/release/cvedge", "target/debug/cvedge"]:
        full = os.path.join(ROOT, path) if not os.path.isabs(path) else path
        if os.access(full, os.X_OK):
            return full
    sys.exit("no cvedge binary: build one (cargo build --release) or pass --cvedge PATH")


def proc_sample(pid):
    status = open(f"/proc/{pid}/status").read()
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1))
    return {
        "rss_mb": field("VmRSS") / 1024,
        "peak_rss_mb": field("VmHWM") / 1024,
        "threads": field("Threads"),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def metrics(http_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "_bucket{" not in line:
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    pick = lambda prefix: sum(v for k, v in values.items() if k.split("{")[0] == prefix)
    return {
        "frames": int(pick("cvedge_frames_total")),
        "skipped": int(pick("cvedge_frames_skipped_total")),
        "delivered": int(pick("cvedge_mqtt_delivered_total")),
        "outbox": int(pick("cvedge_mqtt_outbox_depth")),
        "http_ok": int(sum(v for k, v in values.items() if k.startswith("cvedge_http_requests_total") and 'code="200"' in k)),
    }


def post_image(http_port, photo):
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/image", data=open(photo, "rb").read(),
                                     headers={"Content-Type": "application/octet-stream"})
    return json.load(urllib.request.urlopen(request, timeout=30))


def capture_done(mqtt_port):
    """Whether the last capture command's retained report says `done`. (Files on disk are not the
    count: a capture of a photo already saved is stored once, by its content.)"""
    report = subprocess.run(["mosquitto_sub", "-p", str(mqtt_port), "-t", "cvedge/soak/samples/capture/result",
                             "-C", "1", "-W", "10"], capture_output=True, text=True).stdout
    return bool(report) and json.loads(report).get("state") == "done"


def slope_mb_per_hour(samples):
    """Least-squares slope of resident memory against time."""
    xs = [s["minute"] / 60 for s in samples]
    ys = [s["rss_mb"] for s in samples]
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cvedge", help="the binary (default target/release/cvedge, else target/debug/cvedge)")
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--fps", type=float, default=10)
    parser.add_argument("--sample-s", type=float, default=60)
    parser.add_argument("--json", help="write every sample and the verdict here")
    parser.add_argument("--markdown", help="write the table and verdict here")
    args = parser.parse_args()
    binary = find_binary(args.cvedge)
    tmp = tempfile.mkdtemp(prefix="cvedge-soak-")
    http_port = free_port()
    children = []
    try:
        broker, mqtt_port, _ = start_broker(tmp)
        children.append(broker)
        with open(f"{tmp}/cvedge.toml", "w") as f:
            f.write(f"""model = "{ROOT}/models/demo"
device = "soak"
data_dir = "{tmp}/data"
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
[http]
addr = "127.0.0.1:{http_port}"
[[camera]]
name = "samples"
source = "file:{ROOT}/models/samples"
fps = {args.fps}
interval_s = 0.0
""")
        # Subscribed to cvedge/# (a probe under it received) before the daemon starts, so its
        # first prediction is seen; the predictions are picked out of it below.
        subscriber = start_subscriber(mqtt_port, f"{tmp}/received.txt", "soak-subscriber", "%t %p", persistent=True)
        children.append(subscriber)
        daemon = subprocess.Popen([binary, "run", "--config", f"{tmp}/cvedge.toml", "--state-dir", f"{tmp}/state"],
                                  stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/cvedge.log", "w"))
        children.append(daemon)
        photo = os.path.join(ROOT, "models/samples", sorted(f for f in os.listdir(f"{ROOT}/models/samples") if f.endswith(".jpg"))[0])
        started = time.monotonic()
        samples = []
        captures_asked = captures_done = 0
        captured = False  # a capture was asked at the last sample and is not checked yet
        deadline = started + args.minutes * 60
        while True:
            next_at = started + len(samples) * args.sample_s
            time.sleep(max(0.0, next_at - time.monotonic()))
            if daemon.poll() is not None:
                sys.exit(f"the daemon exited with {daemon.returncode}; its log: {tmp}/cvedge.log")
            sample = {"minute": round((time.monotonic() - started) / 60, 2), **proc_sample(daemon.pid)}
            if len(samples) > 0:
                sample.update(metrics(http_port))
                sample["posted_tag"] = post_image(http_port, photo)["predictions"][0]["tagName"]
                if captured:
                    captures_done += capture_done(mqtt_port)
                    captured = False
                if len(samples) % 10 == 5:
                    captures_asked += 1
                    captured = True
                    # A tag per capture: the looping replay holds a handful of photos, and a
                    # capture under a tag that already has every one of them ends `incomplete`
                    # (by design: it waits for a frame the tag lacks).
                    subprocess.run(["mosquitto_pub", "-p", str(mqtt_port), "-t", "cvedge/soak/samples/capture",
                                    "-m", json.dumps({"tag": f"soak{captures_asked}", "count": 1}), "-q", "1"], check=True)
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            if time.monotonic() >= deadline:
                break
        if captured:
            time.sleep(2)
            captures_done += capture_done(mqtt_port)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        time.sleep(2)  # the subscriber's last acknowledgements
        subscriber.terminate()
        subscriber.wait(timeout=10)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    seqs = set()
    for line in open(f"{tmp}/received.txt"):
        topic, _, payload = line.rstrip("\n").partition(" ")
        if topic == PREDICTIONS:
            seqs.add(json.loads(payload)["seq"])
    last = samples[-1]
    # A new state folder numbers from 1 (src/daemon/seq.rs): every seq from there to the last
    # one received was produced.
    produced = range(1, max(seqs) + 1) if seqs else range(0)
    missing = [s for s in produced if s not in seqs]
    warm = [s for s in samples if s["minute"] >= min(WARMUP_MINUTES, args.minutes / 2)]
    growth = warm[-1]["rss_mb"] - warm[0]["rss_mb"]
    fds = sorted({s["fds"] for s in samples[1:]})
    captures = sum(len(files) for _, _, files in os.walk(f"{tmp}/data"))
    verdict = {
        "binary": binary,
        "minutes": args.minutes,
        "fps_asked": args.fps,
        "fps_classified": round(last["frames"] / (last["minute"] * 60), 2),
        "skipped": last["skipped"],
        "rss_warm_first_mb": round(warm[0]["rss_mb"], 1),
        "rss_end_mb": round(last["rss_mb"], 1),
        "rss_growth_mb": round(growth, 1),
        "rss_slope_mb_per_hour": round(slope_mb_per_hour(warm), 2),
        "peak_rss_mb": round(last["peak_rss_mb"], 1),
        "fds_seen": fds,
        "threads_seen": sorted({s["threads"] for s in samples[1:]}),
        "seqs_received": len(seqs),
        "first_seq_received": min(seqs) if seqs else None,
        "seqs_missing": len(missing),
        "http_posts_ok": last["http_ok"],
        "captures_asked": captures_asked,
        "captures_done": captures_done,
        "capture_files": captures,
    }
    flat_memory = growth <= RSS_GROWTH_LIMIT_MB
    flat_fds = len(fds) <= 1
    verdict["flat"] = flat_memory and flat_fds
    rows = ["| minute | RSS MB | fds | threads | frames | skipped | MQTT delivered |", "|---|---|---|---|---|---|---|"]
    rows += [f"| {s['minute']:.1f} | {s['rss_mb']:.1f} | {s['fds']} | {s['threads']} | {s.get('frames', 0)} | "
             f"{s.get('skipped', 0)} | {s.get('delivered', 0)} |" for s in samples]
    summary = "\n".join(rows) + "\n\n" + "\n".join(f"- {k}: {v}" for k, v in verdict.items()) + "\n"
    print(summary)
    if args.markdown:
        open(args.markdown, "w").write(summary)
    if args.json:
        json.dump({"samples": samples, "verdict": verdict}, open(args.json, "w"), indent=1)
    problems = []
    if not seqs:
        problems.append("the subscriber received no prediction")
    elif min(seqs) != 1:
        problems.append(f"the first seq received was {min(seqs)}, not 1 (the first a new state folder produces)")
    if missing:
        problems.append(f"{len(missing)} seqs never reached the subscriber (first {missing[:5]})")
    if not flat_memory:
        problems.append(f"resident memory grew {growth:.1f} MB after warm-up (limit {RSS_GROWTH_LIMIT_MB})")
    if not flat_fds:
        problems.append(f"open descriptors moved between samples after the first: {fds}")
    if captures_done < captures_asked or (captures_asked and not captures):
        problems.append(f"{captures_done} captures reported done, {captures_asked} asked ({captures} distinct files)")
    for problem in problems:
        print("FAIL:", problem, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
