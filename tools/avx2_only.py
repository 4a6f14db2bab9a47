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
The core is still this machine's, faster than many AVX2-only ones: docs/speed.md calibrates against one. The
benchmark's TFLite peer (XNNPACK) cannot be limited and keeps AVX-512, which only makes our ratio look worse.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

LIMIT = "avx2"  # what FER_CPU_LIMIT says; fer_core.models.speed.machine() records it beside every figure
ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENCV_CPU_DISABLE": "AVX512F,AVX512CD,AVX512BW,AVX512DQ,AVX512VL,AVX512-SKX,AVX512VNNI",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "FER_CPU_LIMIT": LIMIT,
}
JUMPS = {  # MLAS's platform set-up in onnxruntime 1.32.0's x86-64 Linux wheel: name: (bytes, where the jump is)
    "AVX-VNNI": ("b807000000b9010000000fa2a81074", 14),  # cpuid leaf 7 sub-leaf 1; test $0x10 (AVX-VNNI); je
    "AVX-512": ("41f7c200000100740e4c89c048f7d0a8e0", 7),  # test $0x10000 (AVX512F); je, then the XCR0 test
    "AMX": ("41f7d14181e1000000030f85", 10),  # not; and $0x3000000 (AMX-TILE, AMX-INT8 missing?); jne rel32
}
PAST = {"74": "eb", "0f85": "90e9"}  # je rel8 -> jmp rel8; jne rel32 -> nop, jmp rel32 (same length and target)
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


def library(package: Path) -> Path:
    """The onnxruntime package's Python extension: the one file that holds MLAS."""
    found = sorted((package / "capi").glob("onnxruntime_pybind11_state*.so"))
    if len(found) != 1:
        raise RuntimeError(f"expected one onnxruntime_pybind11_state*.so in {package / 'capi'}, found {len(found)}")
    return found[0]


def patch(data: bytearray) -> bytearray:
    """`data` (the extension's bytes) with MLAS's AVX-VNNI, AVX-512 and AMX branches skipped; RuntimeError when a
    pattern is not found exactly once (another build)."""
    for name, (pattern, offset) in JUMPS.items():
        pattern = bytes.fromhex(pattern)
        at = data.find(pattern)
        if at < 0 or data.find(pattern, at + 1) >= 0:
            raise RuntimeError(f"this onnxruntime build is not one tools/avx2_only.py knows (the {name} branch "
                               f"{'is not there' if at < 0 else 'is there twice'}); it was checked on 1.32.0")
        jump = pattern[offset:offset + (2 if pattern[offset] == 0x0F else 1)]  # the conditional jump's opcode
        data[at + offset:at + offset + len(jump)] = bytes.fromhex(PAST[jump.hex()])  # always past the branch
    return data


def saturates(path: Path) -> bool:
    """Whether onnxruntime imported from `path` (a folder holding an onnxruntime package) runs AVX2's int8 kernels,
    seen as the saturation only they have."""
    env = {**os.environ, "PYTHONPATH": str(path)}
    out = subprocess.run([sys.executable, "-c", SATURATION_CHECK], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip() == "True"


def make(directory: Path) -> Path:
    """A patched copy of the installed onnxruntime package in `directory` (remade each time); returns `directory`."""
    import onnxruntime
    source = Path(onnxruntime.__file__).parent
    target = directory / "onnxruntime"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    so = library(target)
    so.write_bytes(patch(bytearray(so.read_bytes())))
    return directory


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
    python_path = os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH")) if p)
    for key, value in {**ENV, "PYTHONPATH": python_path}.items():
        print(f"export {key}='{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
