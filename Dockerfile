# Image of qwen3-search for KubeRay: a Ray image (same Ray as k8s/**/rayVersion) plus the project.
#
# CPU (the default):
#   docker build -t qwen3-search:0.1.0-cpu .
# GPU (a CUDA Ray image and the `gpu` extra: vLLM, which brings the CUDA torch it was built for;
# the k8s gpu overlays serve with `backend: vllm`):
#   docker build -t qwen3-search:0.1.0-gpu \
#     --build-arg RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu --build-arg EXTRAS=gpu .
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu
FROM ${RAY_IMAGE}

# Where torch comes from: the CPU-only index keeps the CPU image free of several GB of CUDA wheels.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Empty: the newest torch on that index; set e.g. 2.9.1 for a reproducible build.
ARG TORCH_VERSION=
# Pinned to the Ray in the base image, so that `pip install .` (ray[serve]>=2.50) never upgrades it
# away from the rayVersion that KubeRay expects.
ARG RAY_VERSION=2.60.0
# Extras of the project to install: empty for CPU; `gpu` for vLLM (pinned to the minor version
# that CI tests on vLLM's CPU build).
ARG EXTRAS=

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=deployments.http.edge:proxy_middlewares
# ^ the edge in every Serve proxy of every pod (deployments/http/edge.py, docs/deployment.md "The edge"):
#   clients' Ray control headers dropped, bodies read in full within a deadline, stalled heads cut.

# torch first, from its own index: installing the project first would pull torch from PyPI.
# Not with the gpu extra: vLLM pins the exact CUDA torch it needs and would replace this one.
RUN case ",${EXTRAS}," in \
      *,gpu,*) echo "torch comes with vLLM" ;; \
      *) pip install "torch${TORCH_VERSION:+==${TORCH_VERSION}}" --index-url "${TORCH_INDEX_URL}" ;; \
    esac

WORKDIR /home/ray/qwen3-search
# Metadata first: the dependency layer is rebuilt only when pyproject.toml changes.
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users clients ./clients
COPY --chown=ray:users deployments ./deployments
# The postgres extra (psycopg, its pool, pgvector's adapters) is small; with it one image serves
# both index backends (index.backend: embedded | postgres). EXTRAS=gpu adds vLLM.
RUN pip install ".[postgres${EXTRAS:+,${EXTRAS}}]" "ray[serve]==${RAY_VERSION}" \
    && python -c "import deployments.app, clients, deployments.index.postgres" \
    && case ",${EXTRAS}," in *,gpu,*) python -c "import vllm; print('vllm', vllm.__version__)" ;; esac

# The Ray image's user (uid 1000, group users/100); the manifests' fsGroup 100 matches it.
USER ray
