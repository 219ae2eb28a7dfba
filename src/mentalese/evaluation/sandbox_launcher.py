"""The child side of the sandbox (see sandbox.py and docs/sandbox.md): run as a script, stdlib only.

    python -I -S -B sandbox_launcher.py '<json config>'      (started by sandbox.run_program)
    python -I -S -B sandbox_launcher.py --probe              (prints which layers this machine allows)

Three processes, so that nothing the program does can outlive it:
  launcher  dies with the evaluator (parent-death signal), joins the pids/memory cgroups the parent made,
            unshares the namespaces (network, pid, mount, IPC; a user namespace too when not root), forks
            the supervisor and waits for it.
  supervisor  pid 1 of the new pid namespace: makes every mount read-only, mounts a size-capped tmpfs on
            /tmp as the working directory and a fresh /proc, forks the program, reaps, and writes the program's
            wait status to the status fd. When it exits the kernel kills everything left in the namespace.
  program   sets the rlimits, drops to the unprivileged uid/gid (when root), no_new_privs, and execs
            `python -I -S -B program.py` with a minimal environment.
Errors before the exec are written to the status fd as one line "error <text>"; the program never runs then.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import sys

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
# statvfs f_flag bit -> mount flag, to keep the flags a remount must not drop (locked in a user namespace)
KEPT_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
              os.ST_NOATIME: MS_NOATIME, os.ST_NODIRATIME: MS_NODIRATIME, os.ST_RELATIME: MS_RELATIME}
RLIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "fsize": resource.RLIMIT_FSIZE,
           "nproc": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE}

libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """A sandbox layer could not be set up: the program must not run."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def unshare_namespaces(root: bool) -> None:
    flags = CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(flags if root else flags | CLONE_NEWUSER), "unshare")
    if not root:  # map our own uid/gid to themselves, so files stay ours and exec drops the namespace caps
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point not in points:
                points.append(point)
    return points


def make_filesystem_read_only(program_dir: str, size: int, uid: int, gid: int, program: bytes) -> None:
    """In the new mount namespace: nothing propagates back, every mount is read-only, /run is an empty
    read-only tmpfs, and `program_dir` (/tmp) is a fresh tmpfs of `size` bytes owned by the uid, holding
    program.py."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for point in _mount_points():
        try:
            st = os.statvfs(point)
        except OSError:
            continue  # hidden under another mount or gone: not reachable by path
        if st.f_flag & os.ST_RDONLY:
            continue
        kept = sum(flag for bit, flag in KEPT_FLAGS.items() if st.f_flag & bit)
        _mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | kept)
    if os.path.isdir("/run") and not os.path.islink("/run"):  # daemons' sockets (dbus, docker, systemd)
        _mount("tmpfs", "/run", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0755")
    _mount("tmpfs", program_dir, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={size},nr_inodes=4096,mode=0700,uid={uid},gid={gid}")
    path = os.path.join(program_dir, "program.py")
    with open(path, "wb") as f:
        f.write(program)
    os.chown(path, uid, gid)
    try:  # a /proc of the new pid namespace: the program sees only its own processes
        _mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except SetupError:
        pass  # documented: then the host's /proc stays visible (read-only), signals still cannot leave


def exec_program(cfg: dict, status_fd: int) -> None:
    """The program process: limits, privilege drop, exec. Never returns."""
    try:
        os.set_inheritable(status_fd, False)  # closed by the exec
        os.chdir(cfg["program_dir"])
        os.umask(0o077)
        for name, value in cfg["rlimits"].items():
            soft, hard = value if isinstance(value, list) else (value, value)
            resource.setrlimit(RLIMITS[name], (soft, hard))
        if os.getuid() == 0:
            os.setgroups([])
            os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
            os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
            if os.getuid() != cfg["uid"] or os.geteuid() != cfg["uid"]:
                raise SetupError("the uid did not change")
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        python = cfg["python"]
        os.execve(python, [python, "-I", "-S", "-B", os.path.join(cfg["program_dir"], "program.py")], cfg["env"])
    except BaseException as e:  # noqa: BLE001 - whatever went wrong, report it and never run the program
        os.write(status_fd, f"error program set-up: {e}\n".encode())
    os._exit(127)


def supervise(cfg: dict, status_fd: int) -> int:
    """pid 1 of the namespace (or a plain parent without namespaces): set up, fork the program, reap."""
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # the launcher killed -> this dies -> the namespace dies
    if cfg["namespaces"]:
        with open(os.path.join(cfg["workdir"], "program.py"), "rb") as f:
            program = f.read()
        make_filesystem_read_only(cfg["program_dir"], cfg["workdir_bytes"], cfg["uid"], cfg["gid"], program)
    child = os.fork()
    if child == 0:
        exec_program(cfg, status_fd)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)  # pid 1 also reaps the orphans reparented to it
        except ChildProcessError:
            return 0
        if pid == child:
            os.write(status_fd, f"exit {status}\n".encode())
            return 0


def probe() -> dict:
    """Which layers work here, tried in a throwaway child (nothing is run)."""
    pid = os.fork()
    if pid == 0:
        try:
            unshare_namespaces(os.getuid() == 0)
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return {"namespaces": os.waitstatus_to_exitcode(status) == 0, "root": os.getuid() == 0}


def main(argv: list[str]) -> int:
    if argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
        return 0
    cfg = json.loads(argv[1])
    status_fd = cfg["status_fd"]
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # the evaluator's thread gone -> all of this goes
    if os.getppid() != cfg["parent_pid"]:
        return 125  # it was already gone
    try:
        for procs in cfg["cgroup_procs"]:  # first: everything below starts inside the cgroups
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        if cfg["namespaces"]:
            unshare_namespaces(os.getuid() == 0)
        child = os.fork()
        if child == 0:
            try:
                code = supervise(cfg, status_fd)
            except BaseException as e:  # noqa: BLE001
                os.write(status_fd, f"error sandbox set-up: {e}\n".encode())
                code = 126
            os._exit(code)
        _, status = os.waitpid(child, 0)
        return os.waitstatus_to_exitcode(status)
    except BaseException as e:  # noqa: BLE001
        os.write(status_fd, f"error sandbox set-up: {e}\n".encode())
        return 126


if __name__ == "__main__":
    sys.exit(main(sys.argv))
