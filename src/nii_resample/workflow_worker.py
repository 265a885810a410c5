"""The resident worker of a workflow run: imports numpy, nibabel and the package once, then
forks one child per resample job, so that a job costs its volume's work and not a new
interpreter's start-up (~0.2 s of CPU; docs/benchmarks.md, "Start-up per job").

One worker per run, node and interpreter: the Snakemake that parsed the Snakefile (the
run's, or the inner one of a cluster job, whose per-volume Snakemakes under srun keep it)
names a folder of its own in NII_RESAMPLE_WORKER_DIR and itself in
NII_RESAMPLE_WORKER_OWNER (runtime.smk); the first job that finds no worker starts one
(scripts/resample_job.py, the resample rule's job), as

    python -P -m nii_resample.workflow_worker <socket path> <ready fd>

A job is one connection: the client sends its arguments, working folder, environment and
stdin/stdout/stderr; the child runs `python -m nii_resample volume`'s main
(nii_resample.jobs.volume_main) with them; the worker answers the child's exit status.

Nothing outlives the run: the worker ends when its owner has ended (checked 4 times a
second: a kill -9 of snakemake included; it then kills its children, whose outputs are
written atomically), when idle for IDLE_SECONDS, or when its socket is gone. A child dies
with the worker (PR_SET_PDEATHSIG) and is killed when its client goes away (Snakemake
cancelling the job); a client whose worker ends first runs its job in-process.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import selectors
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from .processes import pid_is_gone

# A run that runs no job on this host marks its folder so (runtime.smk prepare_run, workflow_runtime.dismiss_resident_worker).
DISMISSED_MARK = "dismissed"
IDLE_SECONDS = 120.0  # a safety net: the run's end is seen through its owner
TICK_SECONDS = 0.25
PR_SET_PDEATHSIG = 1


def owner_gone(owner: str) -> bool:
    """Whether the Snakemake named "pid start" (NII_RESAMPLE_WORKER_OWNER) has ended."""
    try:
        pid, start = owner.split()
        return pid_is_gone(int(pid), start)
    except ValueError:
        return True


def preload() -> None:
    """What every job imports: done once, before any fork."""
    import numpy  # noqa: F401
    import nibabel  # noqa: F401
    from . import command, engine, jobs, nifti, volume  # noqa: F401

    # Imported by the jobs only when first used, so by every child: ~10 ms of an image's
    # ~90 ms job (np.unique imports numpy.ma), ~0.1 s of a label map's (scipy.ndimage);
    # tests/test_worker_early_start.py checks that jobs import nothing more.
    from concurrent.futures import ThreadPoolExecutor  # noqa: F401  (threads > 1)
    import numpy.ma  # noqa: F401
    import scipy.ndimage  # noqa: F401  (label maps, anti-aliasing)
    import scipy.sparse.csgraph  # noqa: F401  (volume_preserving's exact repair)
    import threadpoolctl  # noqa: F401


def read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """A job (scripts/resample_job.py's send_job): an 8-byte length with the client's fds
    0, 1, 2, then its folder, argument count, arguments and environment, NUL-separated."""
    conn.settimeout(10.0)
    header, fds, _, _ = socket.recv_fds(conn, 8, 3)
    size, data = int.from_bytes(header, "big"), b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client left mid-request")
        data += chunk
    conn.settimeout(None)
    if len(fds) != 3:
        raise ConnectionError("client sent no stdin/stdout/stderr")
    words = [os.fsdecode(word) for word in data.split(b"\0")]
    count = int(words[1])
    env = dict(word.split("=", 1) for word in words[2 + count :])
    return {"cwd": words[0], "argv": words[2 : 2 + count], "env": env}, fds


def run_child(request: dict, fds: list[int], libc) -> None:
    """In the forked child: become the job (its fds, folder, environment, signals) and run
    nii_resample.jobs.volume_main, whose log names this worker (which one ran a job, e.g.
    inside which cluster job); never returns."""
    status = 1
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from .jobs import volume_main

        # As `python -m nii_resample volume` (its usage line names the program from it).
        sys.argv = [str(Path(__file__).with_name("__main__.py")), *request["argv"]]
        worker = f"resident worker {os.getppid()} (host {socket.gethostname()})"
        status = volume_main(request["argv"], run_by=worker)
    except SystemExit as end:  # argparse's usage errors
        status = end.code if isinstance(end.code, int) else 1
    except BaseException:  # as an interpreter would: traceback, status 1
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(status)


def received(conn: socket.socket) -> bool:
    """Whether a job's connection is still open (its client sends nothing after the job)."""
    try:
        return bool(conn.recv(1))
    except OSError:
        return False


class ResidentWorker:
    """The workflow run's resident worker: its accept / fork / reap loop (single-threaded:
    forking a threaded process is unsafe). (The Python API's workers are another kind:
    api.ApiWorkerProcess.)"""

    def __init__(self, path: str, owner: str):
        self.path, self.owner = path, owner
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        Path(path).unlink(missing_ok=True)  # a worker of this run that has ended (we hold its lock)
        self.listener.bind(path)
        self.listener.listen(64)
        self.inode = os.stat(path).st_ino
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        # SIGCHLD wakes the selector through this pair.
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        signal.set_wakeup_fd(self.wake_write.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(self.wake_read, selectors.EVENT_READ, "child")

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            request, fds = read_request(conn)
        except (OSError, ValueError, IndexError):  # not a job: drop it, serve the others
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            for sock in (self.listener, self.wake_read, self.wake_write, conn,
                         *self.children.values()):
                sock.close()
            run_child(request, fds, self.libc)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def reap(self) -> None:
        while True:
            try:
                self.wake_read.recv(4096)
            except BlockingIOError:
                break
        for pid in list(self.children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.answer(pid, os.waitstatus_to_exitcode(status))

    def answer(self, pid: int, code: int) -> None:
        conn = self.children.pop(pid)
        self.selector.unregister(conn)
        reply = f"signal {-code}\n" if code < 0 else f"status {code}\n"
        try:
            conn.sendall(reply.encode())
        except OSError:
            pass  # the client has gone: nobody to tell
        conn.close()

    def client_left(self, pid: int) -> None:
        """A client closed its connection before its child ended: Snakemake cancelled the
        job (or was killed with it); the child must not outlive it."""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        self.answer(pid, -signal.SIGKILL)

    def listening(self) -> bool:
        """Whether new jobs may still come: the run goes on and the socket is ours."""
        if self.listener.fileno() < 0:
            return False
        try:
            ours = os.stat(self.path).st_ino == self.inode
        except OSError:
            ours = False
        if ours and not owner_gone(self.owner):
            return True
        self.selector.unregister(self.listener)
        self.listener.close()
        if ours:
            Path(self.path).unlink(missing_ok=True)
        return False

    def run(self) -> None:
        idle_since = time.monotonic()
        while True:
            for key, _ in self.selector.select(TICK_SECONDS):
                if key.data == "accept":
                    self.accept()
                elif key.data == "child":
                    self.reap()
                elif key.data in self.children and not received(key.fileobj):
                    self.client_left(key.data)
            if self.children:
                idle_since = time.monotonic()
            if not self.listening():
                for pid in list(self.children):  # the run is over: so are its jobs
                    self.client_left(pid)
                return
            if time.monotonic() - idle_since > IDLE_SECONDS:
                return

    def close(self) -> None:
        if self.listener.fileno() >= 0:
            self.listener.close()
            try:
                if os.stat(self.path).st_ino == self.inode:
                    Path(self.path).unlink()
            except OSError:
                pass


def serve(path: str, ready_fd: int) -> int:
    """The worker's life; `ready_fd` is closed once it listens (or as it ends)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C ends the run, and so this worker
    owner = os.environ.get("NII_RESAMPLE_WORKER_OWNER", "")
    if owner_gone(owner):
        return 1
    with open(path[: -len(".sock")] + ".lock", "a") as lock:
        # One worker per socket: one of this run that is ending is waited for.
        fcntl.flock(lock, fcntl.LOCK_EX)
        preload()
        worker = ResidentWorker(path, owner)
        os.close(ready_fd)
        try:
            # Read once listening: a dismissal that came before finds no socket to remove.
            if not Path(path).with_name(DISMISSED_MARK).exists():
                worker.run()
        finally:
            worker.close()
        if owner_gone(owner):  # the run's folder is only this run's
            shutil.rmtree(Path(path).parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], int(sys.argv[2])))
