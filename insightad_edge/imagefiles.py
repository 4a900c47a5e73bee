"""Which files are parts' pictures, and which folders can hold them: one rule for `score`, `fit`, `evaluate` and
`watch`, so what one judges the others judge, and what is left unjudged is named the same way everywhere."""
from __future__ import annotations

import os

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"})
FILE_MANAGERS_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})  # Windows Explorer's, in any folder
SYSTEM_FOLDERS = frozenset({"@eadir", "#recycle", "#snapshot", "$recycle.bin", "system volume information",
                            "lost+found"})  # a NAS's thumbnails and recycle bin, a disk's own: never parts


def named_as_image(name: str) -> bool:
    """Whether a file's name says it is an image insightad judges: by its suffix, in any case, and not hidden (a
    Mac writes a ``._p.png`` of its own beside each picture on a share or a stick; rsync copies under a hidden
    name): a hidden file is never a part."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def parts_folder(name: str) -> bool:
    """Whether a subfolder can hold parts: not hidden, and not one a NAS or the system keeps for itself
    (Synology's ``@eaDir`` of thumbnails, a recycle bin), whose pictures are no parts and whose appearing is no
    news."""
    return not name.startswith(".") and name.lower() not in SYSTEM_FOLDERS


def holds_images(folder) -> bool:
    """Whether FOLDER has an image file in it (the first one found answers; one that cannot be read has none)."""
    try:
        with os.scandir(folder) as scan:
            return any(named_as_image(entry.name) and entry.is_file() for entry in scan)
    except OSError:
        return False


def unjudged(name: str) -> bool:
    """Whether a file's name is one insightad leaves unjudged and says so: visible, not named as an image, and not
    a file manager's own (Thumbs.db, desktop.ini: a Windows share shows them; they are not parts)."""
    return not name.startswith(".") and not named_as_image(name) and name.lower() not in FILE_MANAGERS_FILES


def kind_of(name: str) -> str:
    """A file's kind as other_kinds names it: its suffix in lower case, or "" for none."""
    return os.path.splitext(name)[1].lower()


def other_kinds(names) -> dict[str, str]:
    """The kinds of the ``unjudged`` file names among ``names``, each with one example: what a folder holds that
    insightad does not judge."""
    kinds: dict[str, str] = {}
    for name in sorted(filter(unjudged, names)):
        kinds.setdefault(kind_of(name), name)
    return kinds


def kinds_text(kinds: dict[str, str]) -> str:
    """``no suffix (0001), .raw (a.raw)``: other_kinds in words, the first three."""
    return first_three([f"{suffix or 'no suffix'} ({example})" for suffix, example in sorted(kinds.items())], "kinds")


def first_three(names: list[str], noun: str = "") -> str:
    """``a, b, c and 4 more``: a list said in a line a person reads to the end."""
    more = f" and {len(names) - 3} more" + (f" {noun}" if noun else "") if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def readable(text: str) -> str:
    """TEXT as a person, a table and a database can take it. A file name that is not UTF-8 (a Windows share mounted
    with another character set, a camera that writes Latin-1 names) reaches Python with surrogates, which SQLite
    and a strict UTF-8 stdout refuse: its odd bytes are written out instead (``part_\\xe9.png``), the same way
    each time. Any other text comes back as it was."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file system makes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_image(path, image) -> None:
    """Write IMAGE to PATH in the format its suffix names (OSError when it cannot be). Encoded by OpenCV, written by
    Python: OpenCV's own writer takes the process down on a name that is not UTF-8 (a part's name, kept)."""
    import cv2

    done, encoded = cv2.imencode(os.path.splitext(str(path))[1] or ".png", image)
    if not done:
        raise OSError(f"could not encode {readable(str(path))}")
    with open(path, "wb") as file:
        file.write(encoded.data)
