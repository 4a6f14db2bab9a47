"""Run a command as on a slower CPU: for judging, on a fast machine, whether a figure holds on a slow one (issue 21's
first page on a 2-core AVX2-only machine). A measuring aid; nothing in the app or the tests' defaults uses it.

    python tools/slow_cpu.py 0.4 -- python -m pytest tests/test_browser.py -k first_visit

One process per CPU, pinned to it at real-time priority (SCHED_FIFO, so root or CAP_SYS_NICE), spins SHARE of
every PERIOD_MS window and sleeps the rest; all of them use the same windows, so a thread that moves to another CPU
finds it taken too. Everything else (the command, Chromium, the server) runs in what is left. Measured on the 2-core
development machine with a pure-Python loop: share 0.4 made it 1.5-2.1x slower, 0.5 2.3-2.7x, 0.6 2.5-2.7x.

Not a slower core: caches, memory and the instruction set are this machine's, and every wake-up can wait up to a
window's spin (PERIOD_MS * SHARE), which costs chatty multi-process work (a browser and its server) more than a
uniformly slower CPU would. Read its figures as a bound to stay under, not as the slow machine's own.
"""
import argparse
import os
import subprocess
import sys
import time

PERIOD_MS = 1.0  # short windows: a stalled wake-up waits at most PERIOD_MS * SHARE
PRIORITY = 50  # SCHED_FIFO priority of the spinning processes: above every normal process


def steal(cpu: int, share: float, period_s: float, parent: int):
    """Spin `share` of every `period_s` window on `cpu` until `parent` exits."""
    os.sched_setaffinity(0, {cpu})
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
    spin = share * period_s
    window = (time.monotonic() // period_s + 1) * period_s  # windows aligned on the clock: the same on every CPU
    while os.getppid() == parent:
        end = window + spin
        while time.monotonic() < end:
            pass
        window += period_s
        now = time.monotonic()
        if now < window:
            time.sleep(window - now)
        else:  # fell behind (throttled, suspended): rejoin the clock's windows
            window = (now // period_s + 1) * period_s


def start(share: float, period_ms=PERIOD_MS) -> list:
    """One stealing process per CPU this process may use; stop them with `stop`."""
    if not 0 < share < 1:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import slow_cpu; a = sys.argv[2:]; "
            "slow_cpu.steal(int(a[0]), float(a[1]), float(a[2]), int(a[3]))")
    here = os.path.dirname(os.path.abspath(__file__))
    procs = [subprocess.Popen([sys.executable, "-c", code, here, str(cpu), str(share), str(period_ms / 1000),
                               str(os.getpid())], stderr=subprocess.PIPE)
             for cpu in sorted(os.sched_getaffinity(0))]
    time.sleep(0.3)
    failed = [p for p in procs if p.poll() is not None]
    if failed:
        stop(procs)
        why = (failed[0].stderr.read().decode(errors="replace").strip().splitlines() or ["exited"])[-1]
        if "PermissionError" in why:
            raise PermissionError(f"cannot spin at real-time priority (root or CAP_SYS_NICE needed): {why}")
        raise RuntimeError(f"a stealing process failed: {why}")
    return procs


def stop(procs: list):
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("share", type=float, help="share of each CPU to take away, e.g. 0.4")
    parser.add_argument("command", nargs="+", help="the command to run (after --)")
    args = parser.parse_args(argv)
    try:
        procs = start(args.share)
    except (ValueError, OSError, RuntimeError) as e:  # a bad share, no real-time priority, a stealer that failed
        print(f"slow_cpu: {e}", file=sys.stderr)
        return 2
    try:
        return subprocess.run(args.command).returncode
    finally:
        stop(procs)


if __name__ == "__main__":
    sys.exit(main())
