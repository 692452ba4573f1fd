# twins: one image for laptops, Kubernetes and (converted to SIF) HPC.
#   CPU (default):  docker build -t twins:cpu .
#   CUDA:           docker build -t twins:cu128 --build-arg TORCH_VARIANT=cu128 .
# torch wheels bundle their CUDA runtime; the host needs only the NVIDIA driver
# (docker --gpus all, Kubernetes nvidia.com/gpu, apptainer --nv).
ARG PYTHON=3.11
FROM python:${PYTHON}-slim

ARG TORCH_VARIANT=cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    OMP_WAIT_POLICY=PASSIVE \
    MLFLOW_DISABLE_TELEMETRY=true \
    RAY_USAGE_STATS_ENABLED=0

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/twins
COPY pyproject.toml README.md ./
COPY twins ./twins
COPY hydrology ./hydrology
COPY gravwave ./gravwave
COPY data ./data

# torch first and pinned, from the variant's index; then the package (and its test tools, so
# the CI pipeline can run the suite inside the image).
RUN python -m pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        torch==2.13.0 \
    && python -m pip install ".[test,energy]"

COPY tests ./tests
COPY notebooks ./notebooks
COPY benchmarks ./benchmarks
COPY .ci ./.ci
COPY scripts ./scripts

ENTRYPOINT ["twins"]
CMD ["--help"]
