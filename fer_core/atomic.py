"""One way to write a file so that a reader never sees half of it: write a temporary file beside it,
then rename it over the target (atomic on POSIX and Windows)."""
import os
from pathlib import Path


def write_atomic(path, write):
    """Call `write(tmp_path)` to fill a temporary file beside `path`, then rename it onto `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path, text: str):
    return write_atomic(path, lambda p: Path(p).write_text(text))


def write_bytes_atomic(path, data: bytes):
    return write_atomic(path, lambda p: Path(p).write_bytes(data))
