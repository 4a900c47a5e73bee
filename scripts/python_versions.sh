#!/usr/bin/env bash
# The edge's and the station's tests on the Pythons line PCs ship, each in a fresh root of its distribution (CI's
# own Python is 3.11): Ubuntu 22.04 (3.10, the oldest pyproject.toml admits), Debian 13 (3.13), Ubuntu 26.04 (3.14).
#
#   UBUNTU_MIRROR=URL scripts/python_versions.sh WORKDIR [SUITE ...]    as root; SUITE among jammy trixie resolute
#
# Needs debootstrap (Debian's root comes from its default mirror), an Ubuntu archive mirror for Ubuntu's roots (none
# is named here: without UBUNTU_MIRROR only Debian's is made), and pip's index. Each root gets a clean clone of HEAD
# and the newest releases pip picks for that Python. Training is left out (torch's CPU wheel on this disk is for 3.11), and on
# Ubuntu the tests marked browser too (its Chromium is a snap, which a chroot cannot run). Ubuntu's packages are
# taken unverified (Debian has no keyring of theirs): these roots only ever run the tests.
set -euo pipefail
trap 'echo "python_versions.sh: stopped at line $LINENO" >&2' ERR
work=$(realpath -m "${1:?usage: $0 WORKDIR [SUITE ...]}")
mkdir -p "$work"
shift
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(trixie ${UBUNTU_MIRROR:+jammy resolute})
failed=()

mounted=()
release() { for point in "${mounted[@]}"; do umount -l "$point" 2>/dev/null || true; done; }
trap release EXIT

for suite in "${suites[@]}"; do
  root="$work/$suite"
  case $suite in
    trixie) mirror=; options=(); script=; deselect=() ;;
    jammy|resolute) mirror=${UBUNTU_MIRROR:?Ubuntu roots need UBUNTU_MIRROR, an Ubuntu archive mirror}
      options=(--no-check-gpg --components=main,universe)
      script=/usr/share/debootstrap/scripts/gutsy; deselect=(-m "not browser") ;;
    *) echo "unknown suite $suite (jammy, trixie or resolute)" >&2; exit 2 ;;
  esac
  if [ ! -x "$root/usr/bin/python3" ]; then
    debootstrap --variant=minbase "${options[@]}" --include=python3,python3-venv,ca-certificates \
      "$suite" "$root" ${mirror:+"$mirror"} $script > "$work/$suite.debootstrap.log"
  fi
  for point in proc dev dev/shm; do
    mountpoint -q "$root/$point" && continue
    case $point in proc) mount -t proc proc "$root/proc" ;; dev) mount --bind /dev "$root/dev" ;; *) mount -t tmpfs tmpfs "$root/dev/shm" ;; esac
    mounted=("$root/$point" "${mounted[@]}")
  done
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"  # this host's, proxy included
  rm -rf "$root/src" && git clone -q "$repo" "$root/src"
  in_root() { chroot "$root" env -i PATH=/venv/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 bash -c "cd /src && $1"; }
  packages="openssh-server sshfs faketime"  # a network share and a wrong clock for the log's tests, and on Debian the page's browser
  [ "$suite" != trixie ] || packages+=" chromium"
  in_root "dpkg -s $packages >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null 2>&1)"
  in_root "rm -rf /venv && python3 -m venv /venv && pip install --quiet '.[serve,dev]' onnx"
  echo "== $suite: $(in_root 'python --version') with $(in_root "pip list 2>/dev/null | grep -iE '^(numpy|onnxruntime|opencv-python-headless) ' | tr -s ' ' | paste -sd ' '")"
  in_root "python -m pytest -q -p no:cacheprovider tests/edge tests/station ${deselect[*]@Q}" | tail -n 3 || failed+=("$suite")
done
[ ${#failed[@]} -eq 0 ] || { echo "failed on: ${failed[*]}" >&2; exit 1; }
