"""Throw-away single-node SLURM cluster for tests (no systemd, no slurmdbd).

Starts a private ``munged`` (own key, own socket), ``slurmctld`` and ``slurmd``
on localhost from a generated ``slurm.conf`` in a fresh temporary directory,
waits until the node is idle and hands back the environment (``SLURM_CONF``)
that SLURM client commands (sbatch, squeue, scontrol, ...) and Snakemake's
SLURM executor plugin need.  On exit it cancels the cluster's jobs and stops
exactly the daemons it started, by pid, also when start-up failed half-way.

Usage::

    from tests.slurm.cluster import single_node_slurm, SlurmUnavailable

    try:
        with single_node_slurm(tmp_path) as env:
            subprocess.run(["sbatch", "--wrap", "true"], env=env, check=True)
    except SlurmUnavailable as exc:
        pytest.skip(str(exc))

or with the class (more information, e.g. ``cluster.partition``)::

    with SlurmCluster(tmp_path) as cluster:
        jobid = cluster.sbatch_wrap("echo hi", output=tmp_path / "out.log")
        assert cluster.wait_for_job(jobid) == "COMPLETED"

Only root can run this (the daemons run as root, SlurmUser=root).  Missing
Debian packages (slurm-wlm, munge) are installed with apt-get when running as
root, unless SLURM_TEST_NO_INSTALL=1.  Whenever SLURM cannot be started,
:class:`SlurmUnavailable` is raised with the reason (and daemon log tails).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from nii_resample.processes import alive  # noqa: E402  (the package's own check)

__all__ = [
    "SlurmUnavailable",
    "SlurmCluster",
    "single_node_slurm",
    "ensure_slurm_installed",
    "DEBIAN_PACKAGES",
]

#: Debian packages that provide everything (daemons, clients, plugins, munge).
DEBIAN_PACKAGES = ("slurm-wlm", "munge")

#: Executables that must be present for the cluster to start.
REQUIRED_EXECUTABLES = (
    "munged",
    "munge",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
)

_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"

# Client commands that get a SLURM_CONF-defaulting shim in <base_dir>/bin.
_CLIENT_COMMANDS = (
    "srun",
    "sbatch",
    "squeue",
    "scancel",
    "scontrol",
    "sinfo",
    "sacct",
    "sacctmgr",
    "sshare",
    "salloc",
    "sattach",
    "sstat",
    "sprio",
    "sdiag",
)

# Environment variables that would make client commands talk to another
# cluster or pretend to be inside a job; removed from the yielded env.
_SCRUB_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_")

_PathLike = Union[str, "os.PathLike[str]"]


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be started here; ``str(exc)`` says why (use for pytest.skip)."""


# --------------------------------------------------------------------------
# installation
# --------------------------------------------------------------------------


def _which(name: str) -> Optional[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
    return shutil.which(name, path=path)


def _missing_executables() -> List[str]:
    return [exe for exe in REQUIRED_EXECUTABLES if _which(exe) is None]


def ensure_slurm_installed(
    packages: Sequence[str] = DEBIAN_PACKAGES, timeout: float = 1200
) -> None:
    """Install the Debian SLURM/munge packages if executables are missing.

    Raises SlurmUnavailable when they are missing and cannot be installed
    (not root, no apt-get, SLURM_TEST_NO_INSTALL=1, or apt-get failed).
    """
    missing = _missing_executables()
    if not missing:
        return
    why = f"SLURM executables missing: {', '.join(missing)}"
    if os.environ.get("SLURM_TEST_NO_INSTALL", "") not in ("", "0"):
        raise SlurmUnavailable(f"{why}; SLURM_TEST_NO_INSTALL is set")
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            f"{why}; installing {' '.join(packages)} needs root (apt-get)"
        )
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{why}; no apt-get on this machine")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"{why}; '{' '.join(cmd)}' timed out") from None
        if proc.returncode != 0:
            raise SlurmUnavailable(
                f"{why}; '{' '.join(cmd)}' failed (rc={proc.returncode}):\n"
                f"{_tail(proc.stdout + proc.stderr, 30)}"
            )
    missing = _missing_executables()
    if missing:
        raise SlurmUnavailable(
            f"still missing after installing {' '.join(packages)}: {', '.join(missing)}"
        )


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _read_tail(path: Path, lines: int = 40) -> str:
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _free_ports(count: int) -> List[int]:
    """Ports that are free right now on 127.0.0.1 (distinct)."""
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _slurmd_hardware() -> Dict[str, str]:
    """Parse ``slurmd -C`` (NodeName=vm CPUs=2 ... RealMemory=24105)."""
    try:
        out = subprocess.run(
            [_which("slurmd") or "slurmd", "-C"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmUnavailable(f"'slurmd -C' could not run: {exc}") from None
    first = next(
        (ln for ln in out.stdout.splitlines() if ln.startswith("NodeName=")), ""
    )
    hw = dict(re.findall(r"(\w+)=(\S+)", first))
    if "CPUs" not in hw or "RealMemory" not in hw:
        raise SlurmUnavailable(
            f"'slurmd -C' gave no hardware line (rc={out.returncode}): "
            f"{_tail(out.stdout + out.stderr, 10)}"
        )
    return hw


def _pid_alive(pid: int) -> bool:
    if not alive(pid):
        return False
    # a zombie child still "exists"; reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


# --------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------


class SlurmCluster:
    """A single-node SLURM cluster on localhost, for tests.

    Parameters
    ----------
    tmp_dir:
        Parent directory for this cluster's files (config, logs, state).  A
        unique ``slurm-XXXX`` sub-directory is made in it.  Sockets and the
        slurmd spool live in a short, unique directory under /tmp (unix
        socket paths are limited to 108 bytes, and munged insists that the
        socket's directory is world-executable), removed on stop.
    partition:
        Name of the single (default) partition.
    cpus, real_memory_mb:
        Upper bounds for the node definition; by default what ``slurmd -C``
        reports (memory: 90 % of it, so slurmd never finds "less memory than
        configured" and drains the node).
    min_job_age:
        ``MinJobAge`` (s) = how long finished jobs stay visible to ``squeue``.
        Snakemake's SLURM plugin silently switches ``squeue`` status queries
        back to ``sacct`` when MinJobAge < 3 * init-seconds-before-status-checks.
    start_timeout:
        Seconds to wait for munged / slurmctld / the node to become idle.
    install:
        Install missing Debian packages (root only).
    extra_conf:
        Extra lines appended to slurm.conf.
    client_shims:
        Put ``<base_dir>/bin`` first on the env's PATH with wrappers for the
        client commands (srun, sbatch, squeue, ...) that default SLURM_CONF
        to this cluster (needed for Snakemake's jobstep ``srun``, see
        :meth:`_write_client_shims`).
    """

    def __init__(
        self,
        tmp_dir: Optional[_PathLike] = None,
        *,
        partition: str = "debug",
        cpus: Optional[int] = None,
        real_memory_mb: Optional[int] = None,
        min_job_age: int = 300,
        start_timeout: float = 60.0,
        install: bool = True,
        extra_conf: Sequence[str] = (),
        client_shims: bool = True,
    ) -> None:
        self._tmp_parent = Path(tmp_dir) if tmp_dir is not None else None
        self.partition = partition
        self._cpus = cpus
        self._real_memory_mb = real_memory_mb
        self.min_job_age = int(min_job_age)
        self.start_timeout = float(start_timeout)
        self.install = install
        self.extra_conf = list(extra_conf)
        self.client_shims = client_shims
        self.bin_dir: Optional[Path] = None

        self.base_dir: Optional[Path] = None  # config, logs, state
        self.run_dir: Optional[Path] = None  # sockets, spool (short path)
        self.conf_path: Optional[Path] = None
        self.log_dir: Optional[Path] = None
        self.node_name: Optional[str] = None
        self.cpus: Optional[int] = None
        self.real_memory_mb: Optional[int] = None
        self.env: Dict[str, str] = {}
        #: name -> Popen of the daemons this object started
        self.daemons: Dict[str, subprocess.Popen] = {}
        self._logfiles: Dict[str, Path] = {}
        self._started = False

    # ------------------------------------------------------------ public API
    @property
    def pids(self) -> Dict[str, int]:
        """pids of the daemons this object started (name -> pid)."""
        return {name: p.pid for name, p in self.daemons.items()}

    def start(self) -> Dict[str, str]:
        """Start munged, slurmctld, slurmd; return the env to use.

        Raises SlurmUnavailable (after stopping whatever it started).
        """
        if self._started:
            raise RuntimeError("cluster already started")
        self._started = True
        try:
            return self._start()
        except SlurmUnavailable as exc:
            logs = self.daemon_logs()
            self.stop()
            raise SlurmUnavailable(f"{exc}\n{logs}".rstrip()) from None
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        """Cancel this cluster's jobs, stop the daemons it started (by pid)."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            self._cancel_all_jobs(timeout=min(timeout, 10.0))
        # slurmd first (so it does not try to reach a dead controller), munged last
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.daemons.pop(name, None)
            if proc is not None:
                self._terminate(proc, timeout)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def run(
        self, args: Sequence[str], timeout: float = 30, check: bool = True, **kw
    ) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        proc = subprocess.run(
            list(args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(
                proc.returncode, list(args), proc.stdout, proc.stderr
            )
        return proc

    def sbatch_wrap(
        self,
        command: str,
        *,
        output: Optional[_PathLike] = None,
        extra_args: Sequence[str] = (),
        cwd: Optional[_PathLike] = None,
    ) -> str:
        """``sbatch --parsable --wrap COMMAND``; returns the job id."""
        args = ["sbatch", "--parsable", "-p", self.partition]
        if output is not None:
            args += ["-o", str(output)]
        args += [*extra_args, "--wrap", command]
        proc = self.run(args, cwd=cwd)
        return proc.stdout.strip().split(";")[0]

    def job_state(self, jobid: str) -> Optional[str]:
        """State of a job as squeue shows it (None when unknown)."""
        proc = self.run(
            ["squeue", "-h", "--states=all", "-j", str(jobid), "-o", "%T"],
            check=False,
        )
        state = proc.stdout.strip()
        return state or None

    def wait_for_job(self, jobid: str, timeout: float = 120) -> str:
        """Wait until a job has left PENDING/RUNNING/...; return its final state."""
        deadline = time.monotonic() + timeout
        active = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"}
        state = None
        while time.monotonic() < deadline:
            state = self.job_state(jobid)
            if state is not None and state not in active:
                return state
            time.sleep(0.5)
        raise TimeoutError(
            f"job {jobid} still {state} after {timeout}s\n{self.daemon_logs()}"
        )

    def daemon_logs(self, lines: int = 40) -> str:
        """Tails of the daemon logs (for failure messages)."""
        parts = []
        for name, path in self._logfiles.items():
            if path.exists():
                parts.append(f"----- {name}: {path} (last {lines} lines) -----")
                parts.append(_read_tail(path, lines))
        return "\n".join(parts)

    # ------------------------------------------------------------ internals
    def _start(self) -> Dict[str, str]:
        if os.geteuid() != 0:
            raise SlurmUnavailable(
                "the test SLURM cluster needs root (its daemons run with "
                f"SlurmUser=root); running as uid {os.geteuid()}"
            )
        if self.install:
            ensure_slurm_installed()
        else:
            missing = _missing_executables()
            if missing:
                raise SlurmUnavailable(
                    f"SLURM executables missing: {', '.join(missing)}"
                )

        parent = self._tmp_parent
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.base_dir = Path(
            tempfile.mkdtemp(prefix="slurm-", dir=str(parent) if parent else None)
        )
        self.run_dir = Path(tempfile.mkdtemp(prefix="slurm-run-", dir="/tmp"))
        # munged: "execute permissions for all required" on the socket dir
        os.chmod(self.run_dir, 0o755)
        self.log_dir = self.base_dir / "log"
        for d in (self.log_dir, self.base_dir / "state", self.base_dir / "etc"):
            d.mkdir(parents=True)
        munge_dir = self.run_dir / "munge"
        munge_dir.mkdir(mode=0o755)
        os.chmod(munge_dir, 0o755)
        key_dir = self.base_dir / "munge-key"
        key_dir.mkdir(mode=0o700)
        spool = self.run_dir / "spool"
        spool.mkdir(mode=0o755)

        hw = _slurmd_hardware()
        self.node_name = hw.get("NodeName") or socket.gethostname().split(".")[0]
        hw_cpus = int(hw["CPUs"])
        self.cpus = min(hw_cpus, self._cpus) if self._cpus else hw_cpus
        mem = max(1, int(int(hw["RealMemory"]) * 0.9))
        self.real_memory_mb = (
            min(mem, self._real_memory_mb) if self._real_memory_mb else mem
        )

        # ---- munged (private key + socket, foreground) --------------------
        key = key_dir / "munge.key"
        self._make_munge_key(key)
        socket_path = munge_dir / "munge.socket.2"
        self._spawn(
            "munged",
            [
                _which("munged") or "munged",
                "--foreground",
                f"--socket={socket_path}",
                f"--key-file={key}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--seed-file={key_dir / 'munged.seed'}",
                f"--log-file={self.log_dir / 'munged.log'}",
            ],
        )
        self._wait_for(
            "munged to answer on its socket",
            lambda: self._munge_ok(socket_path),
            daemon="munged",
            timeout=min(self.start_timeout, 30),
        )

        # ---- slurm.conf --------------------------------------------------
        ctld_port, slurmd_port = _free_ports(2)
        self.conf_path = self.base_dir / "etc" / "slurm.conf"
        self.conf_path.write_text(
            self._render_conf(
                socket_path=socket_path,
                spool=spool,
                ctld_port=ctld_port,
                slurmd_port=slurmd_port,
            )
        )
        self._write_client_shims()
        self.env = self._make_env()

        # ---- slurmctld ---------------------------------------------------
        self._spawn(
            "slurmctld",
            [_which("slurmctld") or "slurmctld", "-D", "-i", "-f", str(self.conf_path)],
        )
        self._wait_for(
            "slurmctld to answer 'scontrol ping'",
            self._ctld_up,
            daemon="slurmctld",
        )

        # ---- slurmd ------------------------------------------------------
        self._spawn(
            "slurmd",
            [
                _which("slurmd") or "slurmd",
                "-D",
                "-f",
                str(self.conf_path),
                "-N",
                self.node_name,
            ],
        )
        self._wait_for(
            f"node {self.node_name} to become idle",
            self._node_idle,
            daemon="slurmd",
        )
        return self.env

    def _render_conf(self, *, socket_path, spool, ctld_port, slurmd_port) -> str:
        host = socket.gethostname().split(".")[0]
        b = self.base_dir
        lines = [
            f"ClusterName=test{os.getpid()}",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={socket_path}",
            f"StateSaveLocation={b / 'state'}",
            f"SlurmdSpoolDir={spool}",
            f"SlurmctldPidFile={b / 'slurmctld.pid'}",
            f"SlurmdPidFile={b / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "MailProg=/bin/true",
            # no cgroups anywhere: these two plugins never load cgroup code,
            # so no cgroup.conf is needed (checked with Slurm 22.05)
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=5",
            f"MinJobAge={self.min_job_age}",
            "MaxArraySize=1001",
            *self.extra_conf,
            (
                f"NodeName={self.node_name} NodeAddr=127.0.0.1 "
                f"CPUs={self.cpus} RealMemory={self.real_memory_mb} State=UNKNOWN"
            ),
            (
                f"PartitionName={self.partition} Nodes={self.node_name} "
                "Default=YES MaxTime=INFINITE State=UP"
            ),
        ]
        return "\n".join(lines) + "\n"

    def _make_env(self) -> Dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_ENV_PREFIXES)
        }
        env["SLURM_CONF"] = str(self.conf_path)
        path = env.get("PATH", "")
        if self.client_shims and self.bin_dir is not None:
            path = f"{self.bin_dir}:{path}" if path else str(self.bin_dir)
        for extra in ("/usr/sbin", "/usr/bin"):
            if extra not in path.split(":"):
                path = f"{path}:{extra}" if path else extra
        env["PATH"] = path
        return env

    def _write_client_shims(self) -> None:
        """bin/<client> wrappers that default SLURM_CONF to this cluster.

        Snakemake's slurm-jobstep executor (inside the batch job) strips every
        SLURM_* variable except a few job ids before it calls ``srun``, so
        SLURM_CONF is lost and srun dies with "Could not establish a
        configuration source" (a real cluster has /etc/slurm/slurm.conf or a
        configless slurmd).  With the shim dir first on PATH the clients still
        find this cluster's config.
        """
        self.bin_dir = self.base_dir / "bin"
        self.bin_dir.mkdir(exist_ok=True)
        if not self.client_shims:
            return
        for name in _CLIENT_COMMANDS:
            # the real binary, never another cluster's shim found via PATH
            real = shutil.which(name, path=_SYSTEM_PATH)
            if real is None:
                continue
            shim = self.bin_dir / name
            shim.write_text(
                "#!/bin/sh\n"
                f': "${{SLURM_CONF:={self.conf_path}}}"\n'
                "export SLURM_CONF\n"
                f'exec {real} "$@"\n'
            )
            shim.chmod(0o755)

    def _make_munge_key(self, key: Path) -> None:
        mungekey = _which("mungekey")
        if mungekey:
            proc = subprocess.run(
                [mungekey, "--create", f"--keyfile={key}"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if proc.returncode == 0 and key.exists():
                os.chmod(key, 0o600)
                return
        # fallback (older munge without mungekey): 1024 random bytes
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(1024))

    def _munge_ok(self, socket_path: Path) -> bool:
        if not socket_path.exists():
            return False
        enc = subprocess.run(
            [_which("munge") or "munge", "-n", "-S", str(socket_path)],
            capture_output=True,
            timeout=10,
        )
        return enc.returncode == 0 and bool(enc.stdout.strip())

    def _ctld_up(self) -> bool:
        proc = self.run(["scontrol", "ping"], check=False, timeout=15)
        return proc.returncode == 0 and "UP" in proc.stdout

    def _node_idle(self) -> bool:
        proc = self.run(
            ["sinfo", "-h", "-N", "-n", self.node_name, "-o", "%t"],
            check=False,
            timeout=15,
        )
        state = proc.stdout.strip()
        # before slurmd registers the node is "unk*"/"down*"; a node that is
        # drained or invalid (config does not match the hardware) stays so
        if state in ("drain", "drng", "inval", "fail", "failg"):
            reason = self.run(
                ["sinfo", "-h", "-N", "-n", self.node_name, "-o", "%E"],
                check=False,
            ).stdout.strip()
            raise SlurmUnavailable(
                f"node {self.node_name} is {state!r} (reason: {reason or '?'})"
            )
        return proc.returncode == 0 and state == "idle"

    def _spawn(self, name: str, cmd: List[str]) -> None:
        out = self.log_dir / f"{name}.stdout"
        self._logfiles[f"{name} (stdout/stderr)"] = out
        if name in ("slurmctld", "slurmd", "munged"):
            self._logfiles[name] = self.log_dir / f"{name}.log"
        with open(out, "wb") as fh:
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=self.env or None,
                    cwd=str(self.base_dir),
                    # own session: a Ctrl-C in the terminal does not reach it;
                    # we stop it ourselves
                    start_new_session=True,
                )
            except OSError as exc:
                raise SlurmUnavailable(f"cannot start {name}: {exc}") from None
        self.daemons[name] = proc

    def _wait_for(self, what, predicate, *, daemon: str, timeout=None) -> None:
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last_exc: Optional[BaseException] = None
        while time.monotonic() < deadline:
            for name, proc in self.daemons.items():
                if proc.poll() is not None:
                    raise SlurmUnavailable(
                        f"{name} exited with code {proc.returncode} while "
                        f"waiting for {what}"
                    )
            try:
                if predicate():
                    return
            except SlurmUnavailable:
                raise
            except (OSError, subprocess.SubprocessError) as exc:
                last_exc = exc
            time.sleep(0.3)
        extra = f" (last error: {last_exc})" if last_exc else ""
        raise SlurmUnavailable(
            f"timed out after {timeout:.0f}s waiting for {what}{extra}"
        )

    def _cancel_all_jobs(self, timeout: float) -> None:
        """scancel every job of this cluster and wait a little for them to end."""
        try:
            proc = self.run(["squeue", "-h", "-o", "%i"], check=False, timeout=timeout)
            jobids = proc.stdout.split()
            if not jobids:
                return
            self.run(["scancel", *jobids], check=False, timeout=timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                left = self.run(
                    ["squeue", "-h", "-o", "%i"], check=False, timeout=timeout
                ).stdout.split()
                if not left:
                    return
                time.sleep(0.5)
        except (OSError, subprocess.SubprocessError):
            pass

    @staticmethod
    def _terminate(proc: subprocess.Popen, timeout: float) -> None:
        if proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


@contextlib.contextmanager
def single_node_slurm(
    tmp_dir: Optional[_PathLike] = None, **kwargs
) -> Iterator[Dict[str, str]]:
    """Context manager: start a single-node cluster, yield its environment.

    The yielded dict is a full environment (os.environ minus SLURM_* job
    variables, plus SLURM_CONF) to pass as ``env=`` to sbatch/squeue/
    snakemake.  Keyword arguments go to :class:`SlurmCluster`.
    Raises SlurmUnavailable (with the reason) when SLURM cannot start.
    """
    cluster = SlurmCluster(tmp_dir, **kwargs)
    cluster.start()
    try:
        yield cluster.env
    finally:
        cluster.stop()


def run_in_own_group(cmd, *, env, cwd, timeout):
    """Run `cmd` in its own process group, output merged; kill the group on timeout.

    Snakemake with the SLURM executor may wait forever (e.g. when its status command keeps
    failing) and shrugs off SIGTERM while doing so. Returns (exit status, output); on
    timeout raises TimeoutError with the end of the output.
    """
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise TimeoutError(f"timed out after {timeout}s:\n{out[-6000:]}") from None
    return proc.returncode, out


# Imports each module on its own and prints the ones that fail, one per line, with the error.
_PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as error:
        text = (str(error).splitlines() or [""])[0]
        print(name + " | " + type(error).__name__ + (": " + text if text else ""))
"""


def missing_modules(python: str, modules) -> Dict[str, str]:
    """{module: import error} for each of `modules` that `python` cannot import (empty: all
    import); an interpreter that does not run at all misses them all, with its error."""
    try:
        probe = subprocess.run([python, "-c", _PROBE, *modules], capture_output=True,
                               text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        return {name: f"{python} does not run: {error}" for name in modules}
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return {name: f"{python} does not run: {last}" for name in modules}
    found = dict(line.split(" | ", 1) for line in probe.stdout.splitlines() if " | " in line)
    return {name: found[name] for name in modules if name in found}


def missing_reason(python: str, missing: Dict[str, str]) -> str:
    """One sentence naming only the modules `python` lacks (with the first one's error)."""
    first = next(iter(missing.values()))
    return (f"{python} lacks {', '.join(missing)} ({first}); set SNAKEMAKE_SLURM_PYTHON to a "
            "Python with `pip install -r requirements-slurm.txt`")


def python_with(*modules: str) -> str:
    """The Python named by SNAKEMAKE_SLURM_PYTHON (else this one) if it imports `modules`;
    otherwise skip, naming only the modules it lacks (the SLURM plugin lives in its own
    environment, so usually only the plugin is missing)."""
    import pytest

    candidate = os.environ.get("SNAKEMAKE_SLURM_PYTHON") or sys.executable
    missing = missing_modules(candidate, modules)
    if missing:
        pytest.skip(missing_reason(candidate, missing))
    return candidate
