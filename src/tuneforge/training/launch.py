"""Starting a run's training processes: several on this machine, or on several machines.

``tuneforge train`` trains in its own process unless the command line (``--nproc``,
``--nnodes``, ``--node-rank``, ``--master-addr``, ``--master-port``) or LLaMA-Factory's
environment variables (``NPROC_PER_NODE``, ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``, ``FORCE_TORCHRUN``) ask for more; a flag wins over its variable. Then the
config is validated once and torch's launcher (``torchrun``) starts the processes: on one
machine with a private rendezvous on a free port, on several with a static rendezvous at
machine 0, where each machine's number (``NODE_RANK``) orders the global ranks, so rank 0,
the one that writes the result, is on machine 0.

Inside the processes the launcher has set RANK, WORLD_SIZE, LOCAL_RANK and its own
MASTER_ADDR / MASTER_PORT; there the variables are not read again.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.config.environment import check_environment
from tuneforge.config.schema import RunConfig
from tuneforge.errors import ConfigError, UserError
from tuneforge.training.checkpoint import check_output_dir
from tuneforge.training.distributed import device_slots

logger = logging.getLogger(__name__)

# FORCE_TORCHRUN as LLaMA-Factory's `is_env_enabled` reads it (case-insensitive); LLaMA-Factory
# takes any other value for "off", tuneforge refuses it, so "yes" cannot silently mean no.
SWITCH_ON = ("1", "true", "y")
SWITCH_OFF = ("0", "false", "n")
LOCALHOST = "127.0.0.1"
DEFAULT_PORT = 29500  # torchrun's own default: the same on every machine without a MASTER_PORT
# LLaMA-Factory's elastic launch (a c10d rendezvous, a range of machines, restarts): refused
# rather than ignored, since a run that silently is not elastic would fail where one expects it.
ELASTIC = ("RDZV_ID", "MIN_NNODES", "MAX_NNODES", "MAX_RESTARTS")
RENDEZVOUS_TIMEOUT_S = 600  # torch's static rendezvous waits this long for the other machines


class LaunchFailed(UserError):
    """The machines of a multi-machine run could not meet (address, port, firewall)."""


@dataclass(frozen=True)
class Launch:
    """Where a run's processes are: `nnodes` machines of `nproc_per_node` processes each.

    `torchrun` is False for a run in the current process (one process, no launcher)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = LOCALHOST
    master_port: int = DEFAULT_PORT
    torchrun: bool = False

    @property
    def processes(self) -> int:
        return self.nnodes * self.nproc_per_node

    def torchrun_args(self) -> list[str]:
        """torchrun's options for this launch (the command to run follows them)."""
        if self.nnodes == 1:
            where = ["--standalone"]  # a rendezvous on a free local port: no clash between runs
        else:
            where = [
                "--rdzv-backend=static",
                f"--nnodes={self.nnodes}",
                f"--node-rank={self.node_rank}",
                f"--master-addr={self.master_addr}",
                f"--master-port={self.master_port}",
            ]
        return [*where, f"--nproc-per-node={self.nproc_per_node}"]

    def describe(self) -> str:
        """What was chosen, for the log line each machine starts with."""
        if self.nnodes == 1:
            return f"{_count(self.nproc_per_node, 'training process')} on this machine"
        return (
            f"{_count(self.processes, 'training process')} on {self.nnodes} machines: this is "
            f"machine {self.node_rank} (of 0 to {self.nnodes - 1}) with "
            f"{_count(self.nproc_per_node, 'process')}; machine 0 at "
            f"{self.master_addr}:{self.master_port}"
        )


def started_by_launcher(environ: Mapping[str, str]) -> bool:
    """True in a process that torchrun, accelerate or deepspeed started."""
    return "LOCAL_RANK" in environ or _world_size(environ) > 1


def _world_size(environ: Mapping[str, str]) -> int:
    text = environ.get("WORLD_SIZE", "").strip()
    return int(text) if text.isdigit() else 1


def resolve_launch(
    *,
    nproc: int | str | None = None,
    nnodes: int | str | None = None,
    node_rank: int | str | None = None,
    master_addr: str | None = None,
    master_port: int | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Launch:
    """The launch the flags (None: not given) and the environment ask for, checked in one pass.

    Every problem is one line of one `ConfigError`: a number that is not one, a machine number
    outside 0..nnodes-1, a port outside 1..65535, several machines without machine 0's
    address, more processes than this machine has GPUs (or CPU cores), a flag inside a
    launcher. Defaults are LLaMA-Factory's: one machine, number 0, one process per GPU
    (without GPUs, one) once the launcher is used; port 29500, torchrun's, for several."""
    env = os.environ if environ is None else environ
    flags = {
        "--nproc": nproc,
        "--nnodes": nnodes,
        "--node-rank": node_rank,
        "--master-addr": master_addr,
        "--master-port": master_port,
    }
    if started_by_launcher(env):
        _refuse_flags_inside_launcher(flags, env)
        return Launch()
    read = _Reader(flags, env)
    force = read.switch("FORCE_TORCHRUN")
    nodes = read.number("--nnodes", "NNODES", "give a number of machines of 1 or more", 1)
    rank = read.number("--node-rank", "NODE_RANK", "give this machine's number, 0 or more", 0)
    per_node = read.number(
        "--nproc", "NPROC_PER_NODE", "give a number of processes of 1 or more", 1
    )
    port = read.number("--master-port", "MASTER_PORT", "give a port from 1 to 65535", 1, 65535)
    addr = read.address("--master-addr", "MASTER_ADDR")
    n = nodes.value if nodes else 1
    torchrun = force or n > 1 or bool(per_node and per_node.value > 1)
    problems = [*read.problems, *_machine_problems(nodes, rank, addr, read.invalid)]
    if torchrun:
        problems += [*_process_problems(per_node), *_elastic_problems(env)]
    if problems:
        raise ConfigError(*problems)
    if not torchrun:
        return Launch()
    return Launch(
        nproc_per_node=per_node.value if per_node else _gpus() or 1,
        nnodes=n,
        node_rank=rank.value if rank else 0,
        master_addr=addr.value if addr else LOCALHOST,
        master_port=port.value if port else DEFAULT_PORT,
        torchrun=True,
    )


def _machine_problems(
    nodes: _Given | None, rank: _Given | None, addr: _Given | None, invalid: set[str]
) -> list[str]:
    """This machine's number against the number of machines; machine 0's address."""
    problems = []
    if nodes and rank and rank.value >= nodes.value:
        problems.append(
            f"{rank}: with {nodes} the machines are numbered 0 to {nodes.value - 1}; "
            f"give this machine's number"
        )
    elif not nodes and rank and rank.value > 0 and "NNODES" not in invalid:
        problems.append(
            f"{rank}: no --nnodes or NNODES says how many machines, so there is only "
            f"machine 0; give the number of machines too"
        )
    if nodes and nodes.value > 1 and addr is None and "MASTER_ADDR" not in invalid:
        problems.append(
            f"{nodes}: several machines need machine 0's address: set MASTER_ADDR or give "
            f"--master-addr, an IP address or host name every machine can reach"
        )
    return problems


def _process_problems(per_node: _Given | None) -> list[str]:
    """More processes than this machine has GPUs (without GPUs, usable CPU cores)."""
    if per_node is None:
        return []
    slots, described = device_slots()
    if per_node.value <= slots:
        return []
    return [f"{per_node}: this machine has {described}; use {per_node.respelled(slots)} or fewer"]


def _elastic_problems(environ: Mapping[str, str]) -> list[str]:
    return [
        f"{name}={shlex.quote(environ[name])}: LLaMA-Factory's elastic launch "
        f"({', '.join(ELASTIC)}) is not supported; unset it, or start tuneforge with "
        f"torchrun and its --rdzv-* options"
        for name in ELASTIC
        if environ.get(name)
    ]


def launch_training(cfg: RunConfig, launch: Launch, argv: Sequence[str]) -> int:
    """Run ``tuneforge <argv>`` (a train command) as `launch` says; the processes' exit status.

    What can be refused is refused here, once, before the processes load a model each. On a
    CPU each process gets an equal share of the cores as its thread count, so N processes
    do not each start one thread per core and fight over them. When a process fails, its
    own one-line error is what the user sees, not the launcher's report about it.
    """
    import torch
    from torch.distributed import DistError
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    check_environment(cfg)
    check_output_dir(cfg.train)
    gpu = torch.cuda.is_available()
    if not gpu and "OMP_NUM_THREADS" not in os.environ:  # passed down to the processes
        os.environ["OMP_NUM_THREADS"] = str(max(1, device_slots()[0] // launch.nproc_per_node))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    logger.info(
        "Starting %s (%s)", launch.describe(), "NCCL on GPUs" if gpu else "gloo on CPU cores"
    )
    if launch.nnodes > 1:
        logger.info(
            "Waiting up to %d minutes for all %d machines to join at %s:%d",
            RENDEZVOUS_TIMEOUT_S // 60,
            launch.nnodes,
            launch.master_addr,
            launch.master_port,
        )
    try:
        run(parse_args([*launch.torchrun_args(), "-m", "tuneforge.cli", *argv]))
    except ChildFailedError as exc:
        return _exit_code(exc)
    except (RendezvousError, DistError) as exc:
        reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise LaunchFailed(
            f"machine {launch.node_rank} could not meet the other machines at "
            f"{launch.master_addr}:{launch.master_port} ({reason.strip()}); check that "
            f"machine 0 runs the same command, that the address is machine 0's and that "
            f"the port is free there and open to the others"
        ) from None
    if launch.node_rank != 0:
        logger.info("This machine's processes finished; machine 0 saves the result")
    return 0


def _exit_code(exc: Any) -> int:
    """The exit code of the first process that exited by itself: processes the launcher
    killed once another had failed (a negative code, a signal) may be recorded first. Those
    stopped by `OtherProcessFailed` exit with the failing process's code."""
    failures = sorted(exc.failures.values(), key=lambda failure: failure.timestamp)
    own = [f for f in failures if f.exitcode > 0]
    return own[0].exitcode if own else 1


@dataclass(frozen=True)
class _Given:
    """A setting's value and how the user spelled it (``--nnodes 2`` or ``NNODES=2``)."""

    value: Any
    flag: str | None
    variable: str
    text: str

    def __str__(self) -> str:
        return self.respelled(self.text)

    def respelled(self, value: object) -> str:
        """Another value, spelled as this one was (quoted as a shell would need it)."""
        text = shlex.quote(str(value))
        return f"{self.flag} {text}" if self.flag else f"{self.variable}={text}"


class _Reader:
    """Reads each setting from its flag, else its variable (an empty variable is unset),
    and collects a line for each that cannot be used; `invalid` names the variables of
    those, so checks that depend on them are skipped rather than reported twice."""

    def __init__(self, flags: Mapping[str, object], environ: Mapping[str, str]) -> None:
        self.flags = flags
        self.environ = environ
        self.problems: list[str] = []
        self.invalid: set[str] = set()

    def given(self, flag: str | None, variable: str) -> _Given | None:
        value = self.flags.get(flag) if flag else None
        if value is not None:
            return _Given(str(value), flag, variable, str(value))
        text = self.environ.get(variable, "")
        return _Given(text, None, variable, text) if text else None

    def number(
        self, flag: str, variable: str, meaning: str, least: int, most: int | None = None
    ) -> _Given | None:
        given = self.given(flag, variable)
        if given is None:
            return None
        try:
            value = int(given.value.strip())
        except ValueError:
            value = None
        if value is None or value < least or (most is not None and value > most):
            self._refuse(given, meaning)
            return None
        return _Given(value, given.flag, variable, given.text)

    def address(self, flag: str, variable: str) -> _Given | None:
        given = self.given(flag, variable)
        if given and (not given.value.strip() or any(char.isspace() for char in given.value)):
            self._refuse(given, "give the IP address or host name of machine 0")
            return None
        return given

    def _refuse(self, given: _Given, meaning: str) -> None:
        self.problems.append(f"{given}: {meaning}")
        self.invalid.add(given.variable)

    def switch(self, variable: str) -> bool:
        text = self.environ.get(variable, "").strip().lower()
        if text and text not in SWITCH_ON + SWITCH_OFF:
            self.problems.append(
                f"{variable}={shlex.quote(self.environ[variable])}: give 1 or true to "
                f"launch through torchrun, 0 or false not to"
            )
        return text in SWITCH_ON


def _refuse_flags_inside_launcher(flags: Mapping[str, object], environ: Mapping[str, str]) -> None:
    """A launcher around a launcher would start processes inside each process: refused."""
    processes = _world_size(environ)
    given = {
        flag: value
        for flag, value in flags.items()
        if value is not None and not (flag == "--nproc" and str(value) == "1")
    }
    if given:
        raise ConfigError(
            *(
                f"{flag} {value}: this command was already started by a launcher with "
                f"{_count(processes, 'process')}; drop {flag}"
                for flag, value in given.items()
            )
        )


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _count(number: int, noun: str) -> str:
    """``1 process``, ``2 processes``, ``2 machines``."""
    return f"{number} {noun}" + ("" if number == 1 else "es" if noun.endswith("s") else "s")
