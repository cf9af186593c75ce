# Optional: FastChat (controller and GPU model worker) for LLM_BACKEND=fastchat.
# docker-compose.yml builds it for the `fastchat` profile, from the project directory:
# requirements-fastchat.txt pins fschat with the versions it is known to run with
# (transformers<5 above all). From PyPI the Linux x86_64 torch wheel is the CUDA build; the host
# needs the NVIDIA driver and the NVIDIA Container Toolkit.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/huggingface \
    LOGDIR=/tmp

COPY requirements-fastchat.txt /tmp/requirements-fastchat.txt
RUN pip install -r /tmp/requirements-fastchat.txt

RUN groupadd --system --gid 10001 fastchat \
    && useradd --system --uid 10001 --gid fastchat --home-dir /models --no-create-home \
       --shell /usr/sbin/nologin fastchat \
    && mkdir -p /models && chown fastchat:fastchat /models
USER fastchat
WORKDIR /models

CMD ["python3", "-m", "fastchat.serve.controller", "--host", "0.0.0.0", "--port", "21001"]
