"""A real network share for the tests: a folder served by an sshd of the test's own on 127.0.0.1, mounted with sshfs
(FUSE), as a line PC mounts the quality department's server (Debian: apt-get install openssh-server sshfs; .ci/run
installs them)."""
import contextlib
import getpass
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from loopback import free_port


@contextlib.contextmanager
def network_share(work: Path, read_only: bool = False):
    """Yield (served folder, its mount point), mounted ``read_only`` or not; unmounted and the server stopped
    afterwards."""
    sshd, sshfs = shutil.which("sshd") or "/usr/sbin/sshd", shutil.which("sshfs")
    if not Path(sshd).exists() or sshfs is None:
        pytest.fail("a network share needs sshd and sshfs: apt-get install openssh-server sshfs (.ci/run installs them)")
    served, mounted = work / "served", work / "mounted"
    served.mkdir(parents=True)
    mounted.mkdir()
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / key)], check=True)
    (work / "authorized_keys").write_text((work / "user.pub").read_text())
    port = free_port()
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host'}\nAuthorizedKeysFile {work / 'authorized_keys'}\n"
        f"PidFile {work / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation folder (made at boot)
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(work / "sshd_config")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        command = [sshfs, "-p", str(port), "-o", f"IdentityFile={work / 'user'}", "-o", "StrictHostKeyChecking=no",
                   "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", *(["-o", "ro"] if read_only else []),
                   f"{getpass.getuser()}@127.0.0.1:{served}", str(mounted)]
        deadline = time.monotonic() + 20
        while subprocess.run(command, capture_output=True).returncode != 0:  # until sshd listens
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"sshd or sshfs did not start: {server.communicate()[1][-2000:]}")
            time.sleep(0.2)
        try:
            yield served, mounted
        finally:
            subprocess.run([shutil.which("fusermount3") or "fusermount", "-u", "-z", str(mounted)], capture_output=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
