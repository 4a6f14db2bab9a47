# FER Studio as a container: CPU-only PyTorch, the shipped weights baked in, Streamlit on port 8501.
# Built as is by a Hugging Face Docker Space (README's front matter: sdk: docker, app_port: 8501), or locally:
#   docker build -t fer-studio . && docker run --rm -p 8501:8501 fer-studio
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Spaces run the container as uid 1000: that user owns the app, HOME and every cache.
RUN useradd --create-home --uid 1000 user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    XDG_CACHE_HOME=/home/user/.cache \
    FER_CACHE_DIR=/home/user/.cache/fer_studio \
    TORCH_HOME=/home/user/.cache/torch \
    MPLCONFIGDIR=/home/user/.cache/matplotlib \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=false
# (XSRF off: a Space shows the app in an iframe on another site, where the browser drops Streamlit's
# XSRF cookie and every file upload would fail with 403.)
WORKDIR /home/user/app

# CPU wheels of the torch/torchvision versions pinned in requirements.txt first, so that installing the
# rest finds them already satisfied and never pulls the much larger CUDA builds. No system packages are
# needed: opencv-python-headless, av and aiortc wheels bundle their libraries.
COPY requirements.txt ./
RUN grep -E '^(torch|torchvision)==' requirements.txt \
      | xargs pip install --index-url https://download.pytorch.org/whl/cpu \
 && pip install -r requirements.txt \
 && python -c "import torch; assert not torch.version.cuda, torch.__version__"

# The app, its pages and the shipped weights (weights/*.pt + cards; .dockerignore keeps runs, datasets, tests
# and caches out). The build fails unless the default model loads from them (its sha256 checked) and runs.
COPY --chown=user . .
RUN FER_OFFLINE=1 FER_CACHE_DIR=/tmp/fer_check python -c "import numpy as n, fer_core as f; \
f.EmotionRecognizer(detector='haar').classify(n.zeros((1, 48, 48), n.uint8))" \
 && rm -rf /tmp/fer_check && mkdir -p "$FER_CACHE_DIR" "$TORCH_HOME" "$MPLCONFIGDIR" && chown -R user:user "$HOME"

USER user
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
CMD ["streamlit", "run", "app.py", "--server.port", "8501", "--server.address", "0.0.0.0"]
