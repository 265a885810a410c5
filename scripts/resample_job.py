"""The resample rule's job command: a tiny client of this run's resident worker.

    python3 -S scripts/resample_job.py <the arguments of `python -m nii_resample volume`>
    python3 -S scripts/resample_job.py --start-worker   (the Snakefile, while it plans)

A new interpreter that imports numpy, nibabel and the package costs ~0.2 s of CPU per job,
far more than a small volume's work. This client imports only C modules of the
standard library (_socket, zlib, fcntl: `socket` and `json` alone would double its ~13 ms;
-S skips site-packages): it hands its arguments, working folder,
environment and its stdin/stdout/stderr to the run's resident worker
(nii_resample.workflow_worker), which has imported everything once and forks one child per
job; the child runs exactly what `python -m nii_resample volume` runs (same log, whose first
line names the worker, record, failure record and console line) and the client exits with
the child's status, or dies of the child's signal.

It runs the job in-process (execs `python -m nii_resample volume` with these arguments)
whenever there is no worker to use: NII_RESAMPLE_WORKER_DIR unset (not a workflow run, or
turned off with NII_RESAMPLE_WORKER=0), a socket path too long, a worker that cannot start,
or one that ends before answering (README, "Speed and memory").
"""

import os
import sys
import zlib

import _socket

# This workflow's package (src/nii_resample), first on the path of what is started from here:
# never another version installed in the environment.
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
# Longest path a Unix socket can bind to on Linux, less its terminating NUL.
SOCKET_PATH_MAX = 107


def run_package(*words):
    """Become `python -P -m <words>` with this workflow's package first (never returns);
    -P: nothing of the job's working folder is imported."""
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = SRC + (os.pathsep + path if path else "")
    os.execv(sys.executable, [sys.executable, "-P", "-m", *words])


def in_process(note=None):
    """Run the job as `python -m nii_resample volume` itself (never returns)."""
    if note:
        sys.stderr.write(f"\nnii-resample: {note}; running this volume in-process\n")
        sys.stderr.flush()
    run_package("nii_resample", "volume", *sys.argv[1:])


def worker_paths(folder):
    """Socket and start lock of this interpreter's worker: one worker per run, node and
    python (with --use-conda, each environment's python3 gets its own)."""
    key = format(zlib.crc32(os.fsencode(sys.executable)), "08x")  # a venv's own path
    return os.path.join(folder, f"{key}.sock"), os.path.join(folder, f"{key}.start")


def connect(path):
    client = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        client.connect(path)
    except OSError:
        client.close()
        return None
    return client


def start_worker(folder, path):
    """Start the worker, detached (its own session: a job's process group being killed
    must not kill it), and wait until it listens or has ended."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # double fork: the worker is nobody's zombie
        try:
            os.setsid()
            if os.fork() == 0:
                # Not the job's stdout/stderr: Snakemake waits for them to close.
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.set_inheritable(ready_write, True)
                os.closerange(3, ready_write)
                os.closerange(ready_write + 1, 4096)
                run_package("nii_resample.workflow_worker", path, str(ready_write))
        finally:
            os._exit(0)
    os.close(ready_write)
    os.waitpid(pid, 0)
    with os.fdopen(ready_read, "rb") as ready:
        ready.read()  # returns when the worker is listening, or has ended
    return connect(path)


def worker_connection(folder):
    """A connection to the run's worker, started on demand (once: a lock serialises the
    jobs that find none), or None."""
    import fcntl

    path, start_lock = worker_paths(folder)
    if len(path) > SOCKET_PATH_MAX:
        return None
    client = connect(path)
    if client is not None:
        return client
    os.makedirs(folder, mode=0o700, exist_ok=True)
    with open(start_lock, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return connect(path) or start_worker(folder, path)


def send_job(client):
    """The job (nii_resample.workflow_worker.read_request): an 8-byte length with our fds 0, 1, 2,
    then the working folder, the argument count, the arguments and the environment
    (KEY=value), NUL-separated (none of them can hold a NUL)."""
    argv = sys.argv[1:]
    words = [os.getcwd(), str(len(argv)), *argv]
    words += [f"{key}={value}" for key, value in os.environ.items()]
    request = b"\0".join(map(os.fsencode, words))
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
    rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)]
    client.sendmsg([len(request).to_bytes(8, "big")], rights)
    client.sendall(request)


def wait_reply(client):
    """The child's end, ("status", n) or ("signal", n), or None if the worker died."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = client.recv(4096)
        if not chunk:
            return None
        data += chunk
    kind, number = data.split()
    return kind.decode(), int(number)


def start_only(folder):
    """`--start-worker`: the Snakefile starts the run's worker while Snakemake plans
    (runtime.smk, workflow_runtime.start_resident_worker_early); no job."""
    try:
        client = worker_connection(folder) if folder else None
    except OSError:
        client = None
    if client is not None:
        client.close()
    return 0


def main():
    folder = os.environ.get("NII_RESAMPLE_WORKER_DIR")
    if sys.argv[1:] == ["--start-worker"]:
        return start_only(folder)
    if not folder:
        in_process()
    try:
        client = worker_connection(folder)
    except OSError:  # e.g. a temporary folder that cannot be written
        client = None
    if client is None:
        in_process()
    try:
        send_job(client)
        reply = wait_reply(client)
    except OSError:
        reply = None
    if reply is None:
        in_process("the resident worker ended before this job did")
    kind, number = reply
    if kind == "signal":  # die of it, as the in-process job would have
        import signal

        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    return number


if __name__ == "__main__":
    sys.exit(main())
