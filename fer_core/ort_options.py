"""How the app's ONNX Runtime sessions (the int8 classifiers, YuNet) use the CPU: one place for their threading.

ONNX Runtime's pool threads busy-wait for more work after each piece of a run ("spinning"), by default for long
after the run has ended. Called 30 times a second, as the webcam calls the classifier, that kept a whole core busy
between frames (32-33 ms of CPU per 0.9-ms call), taken from the browser's and the server's other threads on a
2-core machine. Spinning bounded to a millisecond still hands work from thread to thread at once inside a run and
between calls made back to back, and then sleeps (measured on AVX2 code paths: docs/speed.md, Threads).
"""
import os

SPIN_US = 1000  # a classifier's idle pool threads busy-wait this long (microseconds) for more work, then sleep
DETECTOR_SPIN_US = 200  # YuNet's: shorter, since the classifier runs right after it and would compete with them
# An ensemble's members run one after another, each in its own session: they do not spin at all (0), as each one's
# spinning threads slowed the next (7 full-width VGG13s: 34.6 ms per face spinning without bound, 6.3 ms without;
# bounded to 1 ms, 22.5 against 11.7 ms on an Intel Xeon; 50 us to stopping at each run's end: within the noise)


def usable_cpus() -> int:
    """The CPUs this process may run on (all of them where the OS cannot say: macOS, Windows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def session_options(threads: int, spin_us: int = SPIN_US):
    """SessionOptions for a CPU session with `threads` threads inside an operator, spinning at most `spin_us`
    (0: not at all)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_us else "0")
    if spin_us:
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(int(spin_us)))
    return options
