"""tools/slow_cpu.py, the measuring aid that runs a command as on a slower CPU: it slows a real Python loop by about
what its share says, passes the command's exit status on, leaves nothing running, and refuses a share it cannot
take. Skips where real-time priority is not allowed (it needs root or CAP_SYS_NICE)."""
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("slow_cpu", ROOT / "tools" / "slow_cpu.py")
slow_cpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slow_cpu)

LOOP = "import time; t = time.perf_counter(); s = sum(i * i for i in range(3_000_000)); print(time.perf_counter() - t)"


def loop_seconds() -> float:
    """Wall time of a pure-Python loop in a fresh interpreter (so on whichever CPU it lands)."""
    return float(subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True, check=True).stdout)


@pytest.fixture
def stealing():
    """The stealers at share 0.5, stopped afterwards; skips where real-time priority is refused."""
    try:
        procs = slow_cpu.start(0.5)
    except PermissionError as e:
        pytest.skip(str(e))
    yield procs
    slow_cpu.stop(procs)
    assert all(p.poll() is not None for p in procs)


@pytest.mark.slow
def test_half_of_every_cpu_taken_makes_a_loop_markedly_slower(stealing):
    slowed = min(loop_seconds() for _ in range(2))
    slow_cpu.stop(stealing)
    free = min(loop_seconds() for _ in range(2))
    # 2x when the loop gets exactly half of its CPU; other work on the machine moves it, hence the margin.
    assert 1.4 < slowed / free < 4, f"free {free:.3f} s, slowed {slowed:.3f} s"


@pytest.mark.slow
def test_the_command_runs_its_exit_status_comes_back_and_nothing_is_left_spinning():
    before = set(subprocess.run(["pgrep", "-f", "slow_cpu.steal"], capture_output=True, text=True).stdout.split())
    code = slow_cpu.main(["0.3", "--", sys.executable, "-c", "import sys; sys.exit(3)"])
    if code == 2:
        pytest.skip("real-time priority is refused here")
    assert code == 3
    time.sleep(0.2)
    after = set(subprocess.run(["pgrep", "-f", "slow_cpu.steal"], capture_output=True, text=True).stdout.split())
    assert after <= before


@pytest.mark.parametrize("share", [0, 1, 1.5, -0.2])
def test_a_share_outside_0_to_1_is_refused(share, capsys):
    assert slow_cpu.main([str(share), "true"]) == 2
    assert "share must be between 0 and 1" in capsys.readouterr().err
