"""Small helpers the benchmark scripts share: running a cvedge command with its wall time, and
rewriting one `## ` section of a markdown report in place."""

import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
