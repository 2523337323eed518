"""A real single-node SLURM cluster on this machine, for the tests: munged, slurmctld and slurmd (Debian's
``slurm-wlm`` and ``munge``) with a generated ``slurm.conf`` naming this host, its cores and its memory, and job
accounting (``slurmdbd`` on a MariaDB of its own): submitit, which the launcher submits with, learns from ``sacct``
that a job was cancelled or ran out of time, and without accounting it would wait for such a job forever.

Bounded: everything it writes is under one temporary directory (its own munge key and socket, state, spool, logs),
the daemons listen on free ports of 127.0.0.1, run in the foreground as children of the test process, and are
stopped when the test module ends, leaving no process of the cluster behind (``Cluster.stop``, ``Cluster.leftovers``).
It needs root (slurmd starts jobs as their user) and the packages; where either is missing, ``why_not`` says so and
the tests skip (HARNESS_REQUIRE_SLURM=1 makes that a failure, as in CI, whose .ci/run installs the packages).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from served_fixture import free_port

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd")
PACKAGES = "slurm-wlm slurmdbd munge mariadb-server"
START_TIMEOUT_S = 60
DRAIN_TIMEOUT_S = 30  # at teardown, for cancelled jobs to end (KillWait=5) and their slurmstepd to report it
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING")


def why_not() -> Optional[str]:
    """Why a cluster cannot be started here, or None."""
    missing = [d for d in DAEMONS + ("sbatch", "scancel", "squeue", "sacct") if not shutil.which(d)]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): apt-get install {PACKAGES}"
    if os.geteuid() != 0:
        return "a SLURM cluster needs root (slurmd starts jobs as their user)"
    return None


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


class Cluster:
    """One node (this host), one partition ``cpu``; ``env`` is what a client command needs (SLURM_CONF)."""

    def __init__(self, root: Path, partition: str = "cpu") -> None:
        self.root = root
        self.partition = partition
        self.host = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.procs: list[subprocess.Popen[bytes]] = []
        self.conf = root / "slurm.conf"
        self.killed: list[str] = []  # what the last stop() found still running after the daemons and killed

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        r = self.root
        for sub in ("state", "spool", "munge", "db"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o400)
        ctld, slurmd, self.dbd_port, self.db_port = free_port(), free_port(), free_port(), free_port()
        self.db_password = secrets.token_hex(8)
        # slurmdbd reads slurmdbd.conf beside SLURM_CONF's slurm.conf; it must be private to its user
        dbd = r / "slurmdbd.conf"
        dbd.write_text(
            f"""AuthType=auth/munge
AuthInfo=socket={r / "munge" / "munge.socket"}
DbdHost={self.host}
DbdAddr=127.0.0.1
DbdPort={self.dbd_port}
SlurmUser=root
LogFile={r / "slurmdbd.log"}
PidFile={r / "slurmdbd.pid"}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=slurm
StoragePass={self.db_password}
StorageLoc=slurm_acct
CommunicationParameters=NoInAddrAny
"""
        )
        os.chmod(dbd, 0o600)
        # KillWait: seconds between SIGTERM and SIGKILL at a time limit or scancel (30 by default);
        # CommunicationParameters: the daemons bind their configured address (127.0.0.1), not every interface
        self.conf.write_text(
            f"""ClusterName=harness-test
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r / "munge" / "munge.socket"}
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "slurmctld.log"}
SlurmdLogFile={r / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.dbd_port}
AccountingStoragePass={r / "munge" / "munge.socket"}
ReturnToService=2
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
KillWait=5
MinJobAge=600
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={max(_memory_mb() - 1024, 1024)} State=UNKNOWN
PartitionName={self.partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _spawn(self, args: list[str], log: str) -> None:
        with open(self.root / log, "ab") as fh:
            self.procs.append(
                subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
            )

    def start(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.stop()  # what did start, and nothing of it left behind
            raise
        return self

    def _start(self) -> None:
        self._write_config()
        m = self.root / "munge"
        self._spawn(
            [
                "munged",
                "--foreground",
                "--force",  # as root, and with this temporary directory's permissions
                f"--socket={m / 'munge.socket'}",
                f"--key-file={m / 'munge.key'}",
                f"--pid-file={m / 'munged.pid'}",
                f"--log-file={m / 'munged.log'}",
                f"--seed-file={m / 'munged.seed'}",
            ],
            "munged.out",
        )
        self._wait(lambda: (m / "munge.socket").exists(), "munged")
        self._start_accounting()
        self._spawn(["slurmctld", "-D", "-c", "-i"], "slurmctld.out")  # -c: no state from an earlier cluster
        self._spawn(["slurmd", "-D", "-N", self.host], "slurmd.out")
        self._wait(self._node_idle, "slurmctld and slurmd (a node in state idle)")

    def _start_accounting(self) -> None:
        """A MariaDB of the cluster's own (its data, socket and port under this directory), then slurmdbd."""
        db = self.root / "db"
        sock = db / "mysqld.sock"
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={db / 'data'}", "--user=root", "--skip-test-db"],
            capture_output=True,
            check=True,
            timeout=120,
        )
        self._spawn(
            [
                "mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={db / 'data'}",
                f"--socket={sock}",
                f"--pid-file={db / 'mysqld.pid'}",
                "--bind-address=127.0.0.1",
                f"--port={self.db_port}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
            ],
            "mariadbd.out",
        )
        self._wait(lambda: sock.exists(), "mariadbd")
        sql = (
            f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{self.db_password}'; "
            "GRANT ALL ON slurm_acct.* TO 'slurm'@'127.0.0.1'; CREATE DATABASE slurm_acct;"
        )
        subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-e", sql],
            capture_output=True,
            check=True,
            timeout=60,
        )
        self._spawn(["slurmdbd", "-D"], "slurmdbd.out")
        self._wait(lambda: self.run(["sacctmgr", "-n", "show", "cluster"], check=False).returncode == 0, "slurmdbd")
        self.run(["sacctmgr", "-i", "add", "cluster", "harness-test"], check=False)

    def _node_idle(self) -> bool:
        out = self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False).stdout
        return out.strip().startswith("idle")

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [_name(p) for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0]} exited at start; see {self.root}: {self.logs()[-2000:]}")
            time.sleep(0.3)
        raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S} s; see {self.root}: {self.logs()[-2000:]}")

    def run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60, check=check)

    def jobs(self) -> list[dict[str, str]]:
        """Jobs the controller still knows (pending, running, and finished within MinJobAge), array tasks apart."""
        out = self.run(["squeue", "-h", "-t", "all", "-r", "-o", "%i|%T|%j|%r"], check=False).stdout
        rows = [line.split("|") for line in out.splitlines() if line.strip()]
        return [{"id": r[0], "state": r[1], "name": r[2], "reason": r[3]} for r in rows if len(r) == 4]

    def job_state(self, job_id: str) -> str:
        out = self.run(["scontrol", "show", "job", job_id], check=False).stdout
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return "UNKNOWN"

    def wait_idle(self, timeout_s: float = 300) -> None:
        """Until no job is pending or running."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(j["state"] in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING") for j in self.jobs()):
                return
            time.sleep(0.5)
        raise TimeoutError(f"jobs still running after {timeout_s} s: {self.jobs()}")

    def logs(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out"))
        )

    def _alive(self, daemon: str) -> bool:
        return any(_name(p) == daemon and p.poll() is None for p in self.procs)

    def leftovers(self) -> list[tuple[int, str]]:
        """Processes of this cluster still running, as (pid, command line), whatever their parent now is.

        A slurmstepd (``slurmstepd: [7.batch]``; its command line names no directory) is re-parented to init as soon
        as slurmd starts it, so neither the daemons' process tree nor a command line finds it: it is one of this
        cluster's by its environment (slurmd's, holding this cluster's SLURM_CONF) or by the log under this
        directory it holds open. A job's process is by its environment (SLURM_JOB_ID and this cluster's SLURM_CONF,
        which sbatch passes on), even one that left its job's process tree. Then the daemons (also by a command line
        naming this directory: munged, mariadbd), and every descendant of any of these. Not this process or its
        ancestors, and not a process that merely names this cluster: a shell with its SLURM_CONF exported, a
        ``tail`` of its log (unless this process started it). Another cluster's processes name another directory.
        """
        procs = _processes()
        root = str(self.root)
        names_root = re.compile(re.escape(root) + r"(?![\w.-])")
        conf = f"SLURM_CONF={self.conf}".encode()
        mine = {p.pid for p in self.procs if p.poll() is None}
        spared = _ancestors(os.getpid(), procs)
        started_here = _descendants({os.getpid()}, procs)
        for pid, (_, comm) in procs.items():
            if pid in spared or pid in mine:
                continue
            cmdline = _read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace")
            env = _read(pid, "environ").split(b"\0")
            ours = conf in env or bool(names_root.search(cmdline))
            if comm in DAEMONS + ("slurmstepd",):
                if ours or _holds_open(pid, root):
                    mine.add(pid)
            elif (conf in env and any(e.startswith(b"SLURM_JOB_ID=") for e in env)) or (
                pid in started_here and names_root.search(cmdline)
            ):
                mine.add(pid)
        found = _descendants(mine, procs) - spared
        return [
            (pid, _read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace").strip()) for pid in sorted(found)
        ]

    def stop(self) -> list[str]:
        """Stop the cluster and leave no process of it behind; returns what had to be killed after the daemons.

        While the daemons still run: cancel every job and wait (``DRAIN_TIMEOUT_S`` at most) until none is active
        and no slurmstepd of this cluster is left. A slurmstepd outlives slurmd (init is its parent), and one whose
        job ends after slurmctld or munged has stopped cannot report the end: it retries ("Retrying job complete
        RPC") for about an hour, with the job's step and batch script as ``slurmstepd: [7.0]``, ``[7.batch]``. Then
        the daemons, newest first. Then whatever ``leftovers`` still finds (such a slurmstepd, a job's process that
        left its job, a helper of a daemon): SIGTERM, then SIGKILL (slurmstepd blocks SIGTERM).
        """
        if self._alive("slurmctld"):
            try:
                self._drain()
            except (OSError, subprocess.SubprocessError):
                pass  # a controller that does not answer: the daemons are stopped and the rest killed below
        for proc in reversed(self.procs):  # slurmd, slurmctld, slurmdbd, mariadbd, munged
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.killed = []
        for _ in range(3):  # a process may fork while it is being killed
            left = self.leftovers()
            if not left:
                break
            self.killed += [f"{pid} {args}" for pid, args in left]
            pids = [pid for pid, _ in left]
            _signal(pids, signal.SIGTERM)
            if not _wait_gone(pids, 2):
                _signal(pids, signal.SIGKILL)
                _wait_gone(pids, 10)
        return self.killed

    def _drain(self) -> None:
        """Cancel every job; wait until none is active and no slurmstepd of this cluster is left."""
        ids = [j["id"] for j in self.jobs() if j["state"] in ACTIVE]
        if ids:
            self.run(["scancel", "--full", *ids], check=False)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            steps = [pid for pid, args in self.leftovers() if args.startswith("slurmstepd")]
            if not steps and not any(j["state"] in ACTIVE for j in self.jobs()):
                return
            time.sleep(0.2)


def _name(proc: subprocess.Popen[bytes]) -> str:
    return str(proc.args[0] if isinstance(proc.args, list) else proc.args)


def _read(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:  # gone, or not ours to read
        return b""


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, executable name); zombies left out (they are no longer running)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(int(entry), "stat").decode(errors="replace")
        if ")" not in stat:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] not in ("Z", "X"):
            procs[int(entry)] = (int(fields[1]), comm)
    return procs


def _ancestors(pid: int, procs: dict[int, tuple[int, str]]) -> set[int]:
    chain = set()
    while pid in procs and pid not in chain:
        chain.add(pid)
        pid = procs[pid][0]
    return chain


def _descendants(roots: set[int], procs: dict[int, tuple[int, str]]) -> set[int]:
    found = set(roots) & set(procs)
    grew = True
    while grew:
        new = {pid for pid, (ppid, _) in procs.items() if ppid in found and pid not in found}
        found |= new
        grew = bool(new)
    return found


def _holds_open(pid: int, root: str) -> bool:
    """Whether the process holds a file under ``root`` open (a slurmstepd holds slurmd's log)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target == root or target.startswith(root + "/"):
            return True
    return False


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        live = _processes()
        if not any(pid in live for pid in pids):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
