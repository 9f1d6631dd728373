"""Small helpers the benchmark scripts share: running a cvedge command with its wall time, the
machine and build a report was measured on, and rewriting one `## ` section of a markdown report in
place."""

import datetime
import os
import platform
import shutil
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd):
    """A command's stdout from the repository root, stripped; "?" when it cannot run."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout.strip()
    except OSError:
        return "?"


def cpu_name():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")


def host_line():
    """`- CPU: ..., nproc = N, Linux X`."""
    return "- CPU: %s, `nproc` = %s, Linux %s" % (cpu_name(), sh(["nproc"]), platform.release())


def built(binary):
    """When `binary` was built, UTC."""
    return datetime.datetime.fromtimestamp(os.path.getmtime(binary), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def head():
    """The commit measured, marked when the sources differ from it."""
    dirty = sh(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"])
    return sh(["git", "rev-parse", "--short", "HEAD"]) + (" (dirty tree)" if dirty else "")


def load_line(before, after):
    return "- load average (1/5/15 min) at start %.2f/%.2f/%.2f, at end %.2f/%.2f/%.2f" % (tuple(before) + tuple(after))


def run_timed(cmd, what):
    """Runs `cmd` from the repository root; returns (CompletedProcess, wall seconds). Exits with
    the command's stderr tail when it fails, since every number after it would be meaningless."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit("FATAL: %s failed (%d):\n%s" % (what, r.returncode, r.stderr[-3000:]))
    return r, wall


def replace_section(out, heading, section):
    """Writes `section` (starting with the line `heading`) into the markdown file `out` (relative
    to the repository root or absolute): in place of the section with that heading, up to the next
    `## ` heading, or appended when there is none."""
    out = out if os.path.isabs(out) else os.path.join(REPO, out)
    text = open(out, encoding="utf-8").read() if os.path.exists(out) else ""
    at = text.find("\n" + heading + "\n")
    if at >= 0:
        nxt = text.find("\n## ", at + 1 + len(heading))
        text = text[:at].rstrip("\n") + "\n\n" + section + ("\n" + text[nxt:].lstrip("\n") if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote %s" % os.path.relpath(out, REPO), file=sys.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary():
    """Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH."""
    return next((b for b in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", shutil.which("mosquitto")] if b and os.path.exists(b)), None)


def start_broker(tmp, extra=""):
    """A private mosquitto on a free loopback port (anonymous, no persistence, `extra` config
    lines appended); returns (process, port, log path) once it accepts connections."""
    port = free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n%s" % (port, extra))
    log_path = os.path.join(tmp, "mosquitto.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([mosquitto_binary() or "mosquitto", "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port, log_path
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise SystemExit("FATAL: mosquitto did not start:\n" + open(log_path).read()[-2000:])


def start_subscriber(port, out_path, client_id, fmt, persistent=False):
    """`mosquitto_sub -F FMT -t 'cvedge/#'` at QoS 1 (with `-c`, a persistent session, when
    `persistent`), line-buffered into out_path; returns once it provably receives (a probe message
    on cvedge/_probe, published until it shows up)."""
    cmd = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-i", client_id,
           "-F", fmt, "-t", "cvedge/#"] + (["-c"] if persistent else [])
    if shutil.which("stdbuf"):
        cmd = ["stdbuf", "-oL"] + cmd
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                        "-t", "cvedge/_probe", "-m", "probe"], capture_output=True)
        time.sleep(0.2)
        if "cvedge/_probe" in open(out_path).read():
            return proc
    proc.kill()
    proc.wait()
    raise SystemExit("FATAL: mosquitto_sub does not receive:\n" + open(out_path).read()[-2000:])
