"""The Hugging Face Space's configuration (README front matter) and the Dockerfile agree with each other and with
the repository, so a deploy cannot silently break: Docker SDK, the port the app serves on, a non-root uid 1000,
CPU-only torch, the shipped weights inside the image."""
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HF_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def front_matter() -> dict:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert m, "README.md must start with the Space's YAML front matter between --- lines"
    fields = {}
    for line in m.group(1).splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip().strip("'\"")
    return fields


def instructions() -> list:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    return [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l.strip() else "")
            for l in text.splitlines() if l.strip()]


def args_of(name) -> list:
    return [a for i, a in instructions() if i == name]


def _pattern(pat: str):
    """A .dockerignore pattern as a regex (Go filepath.Match plus `**`: `*` stays within one folder)."""
    out, i = "", 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pat.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pat[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pat[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pat[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(path: str, patterns: list) -> bool:
    """Whether .dockerignore's patterns leave `path` (relative, with /) out of the build context: a pattern
    that matches the path or one of its folders excludes it, a later `!pattern` brings it back."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    out = False
    for pat in patterns:
        neg = pat.startswith("!")
        rx = _pattern(pat.lstrip("!").strip("/"))
        if any(rx.match(p) for p in prefixes):
            out = not neg
    return out


def dockerignore() -> list:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]


def test_front_matter_configures_a_docker_space():
    fm = front_matter()
    assert fm["sdk"] == "docker"
    assert fm["app_port"].isdigit()
    for key in ("title", "emoji", "colorFrom", "colorTo", "pinned", "license", "short_description"):
        assert fm.get(key), f"front matter lacks {key}"
    assert {fm["colorFrom"], fm["colorTo"]} <= HF_COLORS
    assert fm["pinned"] in ("true", "false")
    assert len(fm["short_description"]) <= 60, "Spaces cut short_description at 60 characters"


def test_readme_still_opens_with_the_project_title():
    body = re.sub(r"^---\n.*?\n---\n", "", (REPO / "README.md").read_text(encoding="utf-8"), count=1, flags=re.S)
    assert body.lstrip().startswith("# FER Studio")


def test_dockerfile_serves_streamlit_on_the_spaces_port():
    port = front_matter()["app_port"]
    cmd = json.loads(args_of("CMD")[-1])
    assert cmd[:3] == ["streamlit", "run", "app.py"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags.get("--server.port") == port, "CMD's port must be the front matter's app_port"
    assert flags.get("--server.address") == "0.0.0.0"
    assert any(port in a.split() for a in args_of("EXPOSE"))
    assert (REPO / "app.py").is_file()


def test_dockerfile_runs_as_uid_1000():
    assert args_of("FROM")[0].startswith("python:3.11-slim")
    user = args_of("USER")[-1].strip()
    assert user not in ("root", "0") and not user.startswith("0:")
    runs = " ".join(args_of("RUN"))
    assert re.search(rf"useradd\b.*(-u|--uid) 1000\b.*\b{re.escape(user)}\b", runs), "the user must be uid 1000"
    env = " ".join(args_of("ENV"))
    assert re.search(r"\bHOME=/home/" + re.escape(user), env)


def test_dockerfile_installs_cpu_torch_before_the_requirements():
    runs = " && ".join(args_of("RUN"))
    cpu = runs.find("download.pytorch.org/whl/cpu")
    rest = runs.find("pip install -r requirements.txt")
    assert 0 <= cpu < rest, "torch must come from the CPU index before requirements.txt is installed"
    pins = re.findall(r"^(torch|torchvision)==\S+$", (REPO / "requirements.txt").read_text(), re.M)
    assert sorted(pins) == ["torch", "torchvision"], "the Dockerfile reads exact torch/torchvision pins from requirements.txt"


def test_image_contains_the_app_and_the_weights():
    copies = [a.split() for a in args_of("COPY")]
    assert any(c[-2:] == [".", "."] for c in copies), "the Dockerfile copies the repository into the image"
    patterns = dockerignore()
    weights = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "weights").glob("*.*"))
    assert any(w.endswith(".pt") for w in weights)
    needed = weights + ["app.py", "ui.py", "requirements.txt", ".streamlit/config.toml", "fer_core/__init__.py",
                         "assets/examples/astronaut.jpg"]  # the upload page's "Try an example"
    needed += re.findall(r"st\.Page\(\s*\"([^\"]+\.py)\"", (REPO / "app.py").read_text())
    left_out = [p for p in needed if ignored(p, patterns)]
    assert not left_out, f".dockerignore leaves out {left_out}"


@pytest.mark.parametrize("path", [".git/config", "runs/vgg13_s/last.pt", "test-artifacts/browser/x.png",
                                  "fer_core/__pycache__/x.pyc", ".pytest_cache/v", "tests/test_app.py",
                                  "tools/avx2_only.py"])
def test_dockerignore_keeps_junk_out(path):
    assert ignored(path, dockerignore())
