"""Loads attachments, only from inside `EMAIL_ATTACHMENTS_DIR`.

The seeds took arbitrary file paths, which behind an HTTP API reads any file the process can.
Here a path must be relative, free of `..`, resolve (symlinks followed) to a regular file inside
the folder, and be no larger than `EMAIL_MAX_ATTACHMENT_BYTES`.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from pathlib import Path, PurePosixPath

from tools.errors import ErrorCode, ToolFailure
from tools.providers.base import Attachment

MAX_TOTAL_ATTACHMENT_BYTES = 25 * 1024 * 1024  # what common mail servers accept in all


def _opened_inside(fd: int, root: Path) -> bool:
    """Whether the file behind `fd` is inside `root` (Linux: /proc names the opened file)."""
    proc_link = Path(f"/proc/self/fd/{fd}")
    if not proc_link.exists():
        return True  # no /proc here: resolve() above is the check
    return Path(os.readlink(proc_link)).is_relative_to(root)


def _reject(path: str, why: str) -> ToolFailure:
    return ToolFailure(ErrorCode.ATTACHMENT_REJECTED, f"attachment {path!r}: {why}", path=path)


def load_attachments(
    paths: list[str], *, folder: Path | None, max_bytes: int
) -> tuple[Attachment, ...]:
    """Read each attachment, or raise `ToolFailure(attachment_rejected)` for the first bad one."""
    if not paths:
        return ()
    if folder is None:
        raise _reject(paths[0], "attachments are disabled (EMAIL_ATTACHMENTS_DIR is not set)")
    root = folder.resolve()
    loaded = []
    total = 0
    for raw in paths:
        relative = PurePosixPath(raw.replace("\\", "/"))
        if (
            relative.is_absolute()
            or raw.startswith(("/", "\\"))
            or ":" in (relative.parts or ("",))[0]
        ):
            raise _reject(raw, "must be a path relative to the attachments folder")
        if any(part == ".." for part in relative.parts) or "\x00" in raw:
            raise _reject(raw, "must not leave the attachments folder")
        resolved = (root / relative).resolve()
        if not resolved.is_relative_to(root):
            raise _reject(raw, "resolves outside the attachments folder")
        try:
            # O_NONBLOCK: opening a FIFO someone left in the folder must not hang the request.
            fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise _reject(raw, "no such file") from None
        except OSError:
            raise _reject(raw, "cannot be opened") from None
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_size > max_bytes:
            problem = f"is {info.st_size} bytes; the limit is {max_bytes}"
        elif not _opened_inside(fd, root):
            # A directory on the way was swapped for a symlink after resolve() checked it.
            problem = "resolves outside the attachments folder"
        if problem:
            os.close(fd)
            raise _reject(raw, problem)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise _reject(raw, f"is larger than the limit of {max_bytes} bytes")
        if any(ord(ch) < 32 for ch in resolved.name):
            raise _reject(raw, "has control characters in its name")
        total += len(data)
        if total > MAX_TOTAL_ATTACHMENT_BYTES:
            raise _reject(raw, f"attachments total more than {MAX_TOTAL_ATTACHMENT_BYTES} bytes")
        content_type = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
        loaded.append(Attachment(filename=resolved.name, content_type=content_type, data=data))
    return tuple(loaded)
