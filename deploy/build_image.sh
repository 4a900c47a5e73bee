#!/usr/bin/env bash
# Build and smoke-test the edge server image on a machine that reaches package registries but no
# container registry: a Debian base image made with debootstrap, and wheels downloaded on the host
# (pip inside the build need not reach the network).
#
#   sudo deploy/build_image.sh            # then: docker run -p 8080:8080 insightad-edge
#
# Needs docker (a running daemon) and debootstrap. Where the daemon may not create networks, start it
# with `dockerd --bridge=none --iptables=false` and set NETWORK=host.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-insightad-edge}
BASE=${BASE:-insightad-base:bookworm}
NETWORK=${NETWORK:-default}
PORT=${PORT:-8080}

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import - "$BASE"
  rm -rf "$rootfs"
fi

# wheels for the image's Python, whatever the host runs: ask the base image for its version and platform
read -r pyver platform < <(docker run --rm --network none "$BASE" python3 -c \
  'import sys, sysconfig; print(f"{sys.version_info[0]}.{sys.version_info[1]}", sysconfig.get_platform().replace("-", "_"))')
rm -f deploy/wheels/*.whl
python3 -m pip wheel --quiet --no-deps --wheel-dir deploy/wheels .      # insightad itself: pure Python
python3 -m pip download --quiet --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform "manylinux2014_${platform#linux_}" --platform "manylinux_2_28_${platform#linux_}" \
  --platform "manylinux_2_17_${platform#linux_}" --platform "${platform}" --dest deploy/wheels \
  "$(ls deploy/wheels/insightad-*.whl)[serve]"

docker build --network "$NETWORK" --build-arg BASE="$BASE" -t "$IMAGE" .
docker image prune --force --filter label=insightad.stage=build >/dev/null   # the build stage, untagged
docker image ls "$IMAGE"

# smoke test: run it, wait for health, ask one question, stop it
name=insightad-smoke-$$
if [ "$NETWORK" = host ]; then
  docker run -d --rm --name "$name" --network host "$IMAGE" insightad-edge serve --host 127.0.0.1 --port "$PORT"
else
  docker run -d --rm --name "$name" -p "127.0.0.1:$PORT:8080" "$IMAGE"
fi
trap 'docker stop "$name" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$PORT/health" && break; sleep 1; done
echo
# one request from inside the container, which has numpy and OpenCV: a 1024x1024 frame with a dark bar, which
# the screw model judges or (no screw in it) refuses as not inspectable: either way a JSON answer, no error
inner_port=$([ "$NETWORK" = host ] && echo "$PORT" || echo 8080)
docker exec -i "$name" python3 - "$inner_port" <<'PY'
import base64, json, sys, urllib.error, urllib.request
import numpy as np, cv2
image = np.full((1024, 1024), 200, np.uint8)
cv2.line(image, (200, 500), (800, 520), 60, 60)
body = json.dumps({"image": base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()}).encode()
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/infer", data=body)
try:
    answer = urllib.request.urlopen(request, timeout=30)
except urllib.error.HTTPError as refused:
    answer = refused
print(answer.status, answer.read().decode())
sys.exit(0 if answer.status in (200, 422) else 1)
PY
docker inspect --format '{{.Config.User}} {{json .Config.ExposedPorts}} {{.Config.Healthcheck.Test}}' "$IMAGE"
