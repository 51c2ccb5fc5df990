"""The unprivileged account process-runtime apps run as when the node is root.

An app is arbitrary code from an operator; a node is often root (it raises its duty
priority, and lab testnets need it for network namespaces). Apps must never inherit
that: :class:`~edgechain.runtime.process.ProcessRuntime` starts each one as the
configured user (``nobody`` by default) with no supplementary groups.

What the app must be able to do as that user, and how this module provides it:

* reach its state directory: every directory on the way must be searchable by the
  user (:func:`find_unreachable` names the first one that is not; the runtime refuses
  to start apps rather than silently running them elsewhere or as root);
* own its state directory and everything in it (:func:`give_tree`), including state
  restored from a migration archive, which root unpacked;
* touch its checkpoint acknowledgement, kept in a per-app ``run/`` directory the user
  owns, so the app never needs write access to the runtime's own files (pid file,
  recorded spec): a pid file an app could rewrite would let it aim the root reaper at
  any process group.

Not covered: all apps share one user, so they can read and write each other's state
(separate users per app would need an allocator of uids); ACLs are not evaluated.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from edgechain.runtime.base import AppRuntimeError

DEFAULT_APP_USER = "nobody"


class AppUserError(AppRuntimeError):
    """The configured app user is unusable (unknown, root, or cannot reach its files)."""


@dataclass(frozen=True)
class AppUser:
    """The account apps run as: its name (for logs), uid and gid; no other groups."""

    name: str
    uid: int
    gid: int


def _lookup_user(text: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
    except (KeyError, OverflowError):
        raise AppUserError(f"app user {text!r} does not exist on this host") from None


def _lookup_gid(text: str) -> int:
    try:
        return grp.getgrgid(int(text)).gr_gid if text.isdigit() else grp.getgrnam(text).gr_gid
    except (KeyError, OverflowError):
        raise AppUserError(f"app group {text!r} does not exist on this host") from None


def resolve_app_user(spec: str) -> AppUser:
    """``USER`` or ``USER:GROUP`` (names or numeric ids) as an :class:`AppUser`.

    The group defaults to the user's primary group. Root (uid or gid 0) is refused:
    the whole point is that apps do not run with the node's privileges.
    """
    user_text, _, group_text = spec.partition(":")
    if not user_text:
        raise AppUserError(f"app user {spec!r}: no user name")
    entry = _lookup_user(user_text)
    gid = _lookup_gid(group_text) if group_text else entry.pw_gid
    if entry.pw_uid == 0 or gid == 0:
        raise AppUserError(f"app user {spec!r} is root; apps never run as root")
    return AppUser(entry.pw_name, entry.pw_uid, gid)


def _may_search(st: os.stat_result, user: AppUser) -> bool:
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def is_open_to_others(path: Path) -> bool:
    """Every directory from ``/`` down to ``path`` is searchable by anyone (so whatever
    the app user, it can reach what lies below)."""
    return all(d.stat().st_mode & stat.S_IXOTH for d in (*path.parents, path))


def find_unreachable(path: Path, user: AppUser) -> Path | None:
    """The first directory from ``/`` down to ``path`` that ``user`` cannot search."""
    path = path.resolve()
    for directory in (*reversed(path.parents), path):
        try:
            st = directory.stat()
        except OSError:
            return directory
        if not _may_search(st, user):
            return directory
    return None


def give_tree(top: Path, user: AppUser, *, fresh: bool = False) -> None:
    """Make ``top`` and everything under it owned by ``user``, ``top`` mode 0700.

    Runs as root over a tree the app (or another app sharing the user) may write to, so
    it must not be tricked into changing files outside the tree: ``top`` is first taken
    back (root-owned 0700, locking out new visitors), the walk goes by directory file
    descriptors without following symlinks (``os.fwalk``), and each entry is changed
    with ``follow_symlinks=False``. A non-directory with several hard links is left as
    it is unless the tree is ``fresh`` (just unpacked by root into a place no app could
    write): protected_hardlinks aside, such a link may lead to a file outside the tree.
    """
    if not top.is_dir() or top.is_symlink():
        raise AppUserError(f"{top} is not a directory")
    os.chown(top, os.geteuid(), os.getegid(), follow_symlinks=False)
    os.chmod(top, 0o700)  # not a symlink (checked), and only root can replace it
    for _, dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
        for name in (*dirnames, *filenames):
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if st.st_uid == user.uid and st.st_gid == user.gid:
                    continue
                if not fresh and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                    continue
                os.chown(name, user.uid, user.gid, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walked (another app's doing): nothing to own
    os.chown(top, user.uid, user.gid, follow_symlinks=False)
