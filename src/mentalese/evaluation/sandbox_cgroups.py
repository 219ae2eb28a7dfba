"""A fresh pids+memory cgroup per sandboxed program (root only), made below the evaluator's own cgroups.

Nested below our own cgroup so that the limits the evaluator already lives under still apply to the program.
cgroup v1 (this project's machines) is tested; cgroup v2 is handled the same way when the controllers are
delegated to our cgroup (its `cgroup.subtree_control` lists them), untested here.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)
CONTROLLERS = ("pids", "memory")
NAME_PREFIX = "mentalese-sandbox-"
LAUNCHER_PROCESSES = 2  # the launcher and the supervisor are in the cgroup too
LAUNCHER_MEMORY = 64 << 20  # their memory, on top of the program's


def _mounts() -> dict[str, tuple[str, int]]:
    """controller -> (mount point, cgroup version), from /proc/self/mountinfo."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = (right.split() + ["", "", ""])[:3]
        point = left.split()[4]
        if fstype == "cgroup":
            for controller in CONTROLLERS:
                if controller in options.split(","):
                    found.setdefault(controller, (point, 1))
        elif fstype == "cgroup2":
            enabled = Path(point, "cgroup.controllers")
            for controller in CONTROLLERS:
                if enabled.exists() and controller in enabled.read_text().split():
                    found.setdefault(controller, (point, 2))
    return found


def _own_paths() -> dict[str, str]:
    """controller -> our cgroup path ('' key: the v2 path), from /proc/self/cgroup."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


class SandboxCgroup:
    """The cgroup directories of one program; kill_all() then remove() when it is over."""

    def __init__(self, dirs: dict[str, tuple[Path, int]]):
        self.dirs = dirs  # controller -> (directory, version); one directory for both under v2

    @property
    def procs_files(self) -> list[str]:
        return sorted({str(d / "cgroup.procs") for d, _ in self.dirs.values()})

    @classmethod
    def create(cls, limits) -> SandboxCgroup | None:
        """The cgroups this machine allows (possibly none: then None, and the rlimits alone apply)."""
        name = f"{NAME_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:10]}"
        values = {"pids": {1: [("pids.max", limits.max_processes + LAUNCHER_PROCESSES)],
                           2: [("pids.max", limits.max_processes + LAUNCHER_PROCESSES)]},
                  "memory": {1: [("memory.limit_in_bytes", None), ("memory.memsw.limit_in_bytes", None)],
                             2: [("memory.max", None), ("memory.swap.max", 0)]}}
        memory = limits.memory_bytes + limits.workdir_bytes + LAUNCHER_MEMORY
        dirs: dict[str, tuple[Path, int]] = {}
        try:
            mounts, own = _mounts(), _own_paths()
        except OSError:
            return None
        for controller in CONTROLLERS:
            if controller not in mounts:
                continue
            point, version = mounts[controller]
            own_path = own.get(controller if version == 1 else "")
            if own_path is None:
                continue
            directory = Path(point + own_path.rstrip("/"), name)
            try:
                if version == 2 and controller not in Path(directory.parent, "cgroup.subtree_control").read_text():
                    continue
                directory.mkdir(exist_ok=version == 2)
                dirs[controller] = (directory, version)
                for file, value in values[controller][version]:
                    path = directory / file
                    if path.exists() or file in ("pids.max", "memory.limit_in_bytes", "memory.max"):
                        path.write_text(str(memory if value is None else value))
            except OSError as e:
                logger.debug("sandbox cgroup %s unavailable: %s", controller, e)
                dirs.pop(controller, None)
                _rmdir(directory)
        return cls(dirs) if dirs else None

    def pids(self) -> set[int]:
        found = set()
        for directory, _ in self.dirs.values():
            try:
                found.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return found

    def kill_all(self, timeout_s: float = 10.0) -> None:
        """SIGKILL every process in the cgroups until none is left (new forks are caught by the loop)."""
        deadline = time.monotonic() + timeout_s
        for directory, version in self.dirs.values():
            if version == 2 and (directory / "cgroup.kill").exists():
                (directory / "cgroup.kill").write_text("1")
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)
        if pids:
            logger.warning("sandbox cgroup still holds processes %s after %.0f s", sorted(pids), timeout_s)

    def oom_kills(self) -> int:
        """How many processes the memory limit killed."""
        if "memory" not in self.dirs:
            return 0
        directory, version = self.dirs["memory"]
        file = directory / ("memory.oom_control" if version == 1 else "memory.events")
        try:
            fields = dict(line.split() for line in file.read_text().splitlines() if len(line.split()) == 2)
        except OSError:
            return 0
        return int(fields.get("oom_kill", 0))

    def remove(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        for directory, _ in self.dirs.values():
            while directory.exists() and not _rmdir(directory) and time.monotonic() < deadline:
                time.sleep(0.01)
            if directory.exists():
                logger.warning("could not remove sandbox cgroup %s", directory)


def _rmdir(directory: Path) -> bool:
    try:
        directory.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
