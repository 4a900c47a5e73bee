"""Which filesystem a path lies on: the inspection log must not lie on a network share.

SQLite locks a file with the host's own locks, which a share does not carry to other hosts: two stations on two
PCs given one log on a share (a unit file copied to the second PC) both wrote to it, and left `file is not a
database`, every verdict of both lost, while each said it had logged them (sshfs here; NFS and SMB shares lock no
better, https://www.sqlite.org/useovernet.html). Read from /proc/self/mountinfo (Linux); elsewhere nothing is known.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

MOUNTINFO = Path("/proc/self/mountinfo")
NETWORK_TYPES = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre",
                 "gpfs", "beegfs", "davfs", "fuse.sshfs", "fuse.rclone", "fuse.s3fs", "fuse.gcsfuse",
                 "fuse.glusterfs", "fuse.cephfs", "fuse.davfs2", "fuse.gvfsd-fuse"}


def _unescaped(field: str) -> str:
    """mountinfo writes a space, tab, newline and backslash in a mount point as octal escapes (``\\040``)."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def network_share(path: Path) -> Optional[str]:
    """``"fuse.sshfs root@host:/srv (mounted at /mnt/qa)"`` when PATH lies on a network filesystem, else None."""
    try:
        lines = MOUNTINFO.read_text().splitlines()
    except OSError:  # not Linux, or no /proc
        return None
    where = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split(" ")
        if "-" not in fields:
            continue
        kind, source = (fields[fields.index("-") + 1:] + ["", ""])[:2]
        mount_point = _unescaped(fields[4])
        inside = where == mount_point or where.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) >= best[0]):  # the last of equal mounts is the one in use
            best = (len(mount_point), f"{kind} {_unescaped(source)} (mounted at {mount_point})"
                    if kind in NETWORK_TYPES else "")
    return (best[1] or None) if best is not None else None
