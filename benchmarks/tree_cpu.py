"""CPU time of a command and of every process it starts, however detached.

``/usr/bin/time`` and ``time`` count a child's CPU only when its parent reaps it: Chromium's renderer and
GPU processes (double-forked by chromedriver) and the dashboard's job workers (a session of their own,
outliving the app that started them) are reaped by init, so a test run's CPU figure misses them. This
runs the command as a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): every orphaned descendant is
re-parented to it and reaped here, so ``RUSAGE_CHILDREN`` holds the whole tree. It names the processes
still alive when the command itself has ended (work a test left running) and waits for them.

    python benchmarks/tree_cpu.py .venv/bin/python -m pytest tests/test_browser*.py -q -n 0 -p no:cacheprovider
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def left_over() -> list[str]:
    """The command lines of the processes re-parented to this one and still running."""
    me, out = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) == me:
                out.append(f"{pid} " + open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:200])
        except OSError:
            pass
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("tree_cpu: cannot become a child subreaper (Linux only)", file=sys.stderr)
        return 2
    start = time.time()
    child = subprocess.Popen(argv)
    code, ended = None, None
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == child.pid:
            code, ended = os.waitstatus_to_exitcode(status), time.time()
            for line in left_over():
                print(f"tree_cpu: still running after the command ended: {line}", file=sys.stderr)
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"tree_cpu: command {ended - start:.1f} s wall, all processes ended after {time.time() - start:.1f} s; "
          f"CPU user {use.ru_utime:.1f} s + system {use.ru_stime:.1f} s = {use.ru_utime + use.ru_stime:.1f} s",
          file=sys.stderr)
    return code or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
