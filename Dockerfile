# The edge server image: no torch, the shipped model inside, a non-root user, port 8080.
#   docker build -t insightad-edge .            (elsewhere: pulls python:3.11-slim)
#   docker run -p 8080:8080 insightad-edge
# On a machine without a registry, deploy/build_image.sh makes a local base image and offline wheels.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
LABEL insightad.stage=build
COPY deploy/wheels/ /tmp/wheels/
COPY pyproject.toml README.md /src/
COPY insightad_edge /src/insightad_edge
COPY insightad_train /src/insightad_train
COPY exported /src/exported
# offline (deploy/build_image.sh): insightad and everything it needs as wheels; else from source and the index
RUN python3 -m venv /opt/insightad \
 && if ls /tmp/wheels/insightad-*.whl >/dev/null 2>&1; then \
      /opt/insightad/bin/pip install --no-cache-dir --no-compile --no-index --find-links /tmp/wheels "insightad[serve]"; \
    else /opt/insightad/bin/pip install --no-cache-dir --no-compile "/src[serve]"; fi

FROM ${BASE}
COPY --from=build /opt/insightad /opt/insightad
RUN useradd --system --uid 10001 --no-create-home insightad
USER insightad
# serve reads its port from INSIGHTAD_PORT, and so does the health check: `-e INSIGHTAD_PORT=9000` moves both
ENV PATH=/opt/insightad/bin:$PATH PYTHONUNBUFFERED=1 INSIGHTAD_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"INSIGHTAD_PORT\"]}/health', timeout=4)"]
CMD ["insightad-edge", "serve", "--host", "0.0.0.0"]
