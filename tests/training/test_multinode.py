"""Several machines: two "machines" of one process each on 127.0.0.1 train as one 2-process
run, started by LLaMA-Factory's variables or by tuneforge's flags; every bad launch setting
is one line of one error, before anything loads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml
from test_multiprocess import common, logged_losses, two_cpu_processes  # noqa: F401 (fixture)

from tuneforge import cli
from tuneforge.errors import ConfigError
from tuneforge.training.distributed import device_slots
from tuneforge.training.launch import LaunchFailed, resolve_launch

VARIABLES = ("FORCE_TORCHRUN", "NNODES", "NODE_RANK", "NPROC_PER_NODE", "MASTER_ADDR")
VARIABLES += ("RDZV_ID", "MIN_NNODES", "MAX_NNODES", "MAX_RESTARTS")
LAUNCHER_SET = ("MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
MACHINE_TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_machine(config, rank: int, port: int, tmp_path, *, by_flags: bool) -> subprocess.Popen:
    """``tuneforge train`` as machine `rank` of 2 would run it, its output in files."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES + LAUNCHER_SET}
    env["OMP_NUM_THREADS"] = "1"  # two machines share this one's cores
    flags = []
    if by_flags:
        flags = ["--nnodes", "2", "--node-rank", str(rank), "--master-addr", "127.0.0.1"]
        flags += ["--master-port", str(port)]
    else:
        env.update(
            FORCE_TORCHRUN="1",
            NNODES="2",
            NODE_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
    with (
        open(tmp_path / f"machine{rank}.out", "w") as out,
        open(tmp_path / f"machine{rank}.err", "w") as err,
    ):  # the child keeps its own copies of the files
        return subprocess.Popen(
            [sys.executable, "-m", "tuneforge.cli", "train", str(config), *flags],
            env=env,
            stdout=out,
            stderr=err,
        )


@pytest.mark.slow  # two launchers and two training processes: ~50 s on 2 busy cores
@two_cpu_processes
@pytest.mark.parametrize("by_flags", [False, True], ids=["environment", "flags"])
def test_two_machines_train_as_one_two_process_run(common, tmp_path, by_flags):  # noqa: F811
    out = tmp_path / "out"  # one folder for both, as a shared file system would be
    config = tmp_path / "run.yaml"
    run = {**common, "output_dir": str(out), "per_device_train_batch_size": 2, "max_steps": 2}
    config.write_text(yaml.safe_dump(run))
    port = free_port()
    machines = [start_machine(config, rank, port, tmp_path, by_flags=by_flags) for rank in (0, 1)]
    try:
        codes = [machine.wait(timeout=MACHINE_TIMEOUT_S) for machine in machines]
    finally:
        for machine in machines:
            machine.kill()
    stdout = [(tmp_path / f"machine{rank}.out").read_text() for rank in (0, 1)]
    stderr = [(tmp_path / f"machine{rank}.err").read_text() for rank in (0, 1)]
    assert codes == [0, 0], stderr

    for rank in (0, 1):
        assert (
            f"Starting 2 training processes on 2 machines: this is machine {rank} (of 0 to 1) "
            f"with 1 process; machine 0 at 127.0.0.1:{port} (gloo on CPU cores)"
        ) in stderr[rank]
    assert stdout[0].count(f"Result in {out}") == 1  # rank 0, on machine 0, saves and says so
    assert "Result in" not in stdout[1]
    assert "machine 0 saves the result" in stderr[1]
    marker = json.loads((out / "checkpoint-2" / "tuneforge_complete.json").read_text())
    assert marker["processes"] == 2  # the Trainer's world size: one run, not two
    assert len(logged_losses(out)) == 2  # one JSONL writer, one line per step
    assert json.loads((out / "all_results.json").read_text())["train_loss"] > 0


def launch_lines(capsys, base_config, tmp_path, *flags: str) -> list[str]:
    """What ``tuneforge train ... FLAGS`` says and exits with when the launch is refused."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(base_config))
    assert cli.main(["train", str(config), *flags]) == ConfigError.exit_code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()


def clear_variables(monkeypatch) -> None:
    for name in VARIABLES + LAUNCHER_SET:
        monkeypatch.delenv(name, raising=False)


def test_every_bad_variable_is_one_line_at_once(monkeypatch, capsys, base_config, tmp_path):
    clear_variables(monkeypatch)
    for name, value in {
        "FORCE_TORCHRUN": "yes",
        "NNODES": "two",
        "NODE_RANK": "-1",
        "NPROC_PER_NODE": "0",
        "MASTER_PORT": "70000",
        "MASTER_ADDR": "machine zero",
    }.items():
        monkeypatch.setenv(name, value)
    assert launch_lines(capsys, base_config, tmp_path) == [
        "tuneforge: error: FORCE_TORCHRUN=yes: give 1 or true to launch through torchrun, "
        "0 or false not to",
        "tuneforge: error: NNODES=two: give a number of machines of 1 or more",
        "tuneforge: error: NODE_RANK=-1: give this machine's number, 0 or more",
        "tuneforge: error: NPROC_PER_NODE=0: give a number of processes of 1 or more",
        "tuneforge: error: MASTER_PORT=70000: give a port from 1 to 65535",
        "tuneforge: error: MASTER_ADDR='machine zero': give the IP address or host name "
        "of machine 0",
    ]


def test_several_machines_need_machine_zero_and_a_rank_below_their_number(
    monkeypatch, capsys, base_config, tmp_path
):
    clear_variables(monkeypatch)
    monkeypatch.setenv("NNODES", "2")
    monkeypatch.setenv("NODE_RANK", "2")
    assert launch_lines(capsys, base_config, tmp_path, "--master-port", "0") == [
        "tuneforge: error: --master-port 0: give a port from 1 to 65535",
        "tuneforge: error: NODE_RANK=2: with NNODES=2 the machines are numbered 0 to 1; "
        "give this machine's number",
        "tuneforge: error: NNODES=2: several machines need machine 0's address: set "
        "MASTER_ADDR or give --master-addr, an IP address or host name every machine can reach",
    ]
    with pytest.raises(ConfigError) as refused:
        resolve_launch(node_rank=1, environ={})
    assert refused.value.lines == [
        "--node-rank 1: no --nnodes or NNODES says how many machines, so there is only "
        "machine 0; give the number of machines too"
    ]


def test_flags_win_over_the_variables():
    env = {"NNODES": "3", "NODE_RANK": "2", "MASTER_ADDR": "10.0.0.9", "MASTER_PORT": "2000"}
    launch = resolve_launch(node_rank="1", master_addr="10.0.0.1", environ=env)
    assert (launch.nnodes, launch.node_rank, launch.master_addr, launch.master_port) == (
        3,
        1,
        "10.0.0.1",
        2000,
    )
    assert not resolve_launch(nnodes=1, environ={"NNODES": "2"}).torchrun
    assert not resolve_launch(nproc=1, environ={"NPROC_PER_NODE": "2"}).torchrun


def test_several_machines_use_a_static_rendezvous_at_machine_zero():
    launch = resolve_launch(environ={"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "node0"})
    assert launch.torchrun and launch.processes == 2
    assert launch.torchrun_args() == [
        "--rdzv-backend=static",
        "--nnodes=2",
        "--node-rank=1",
        "--master-addr=node0",
        "--master-port=29500",  # torchrun's default, the same on every machine
        "--nproc-per-node=1",  # no GPU: one process per machine unless told
    ]


def test_force_torchrun_launches_one_process_on_a_free_local_port():
    assert not resolve_launch(environ={}).torchrun
    assert not resolve_launch(environ={"FORCE_TORCHRUN": "false"}).torchrun
    launch = resolve_launch(environ={"FORCE_TORCHRUN": "TRUE"})  # as LLaMA-Factory reads it
    assert launch.torchrun and launch.processes == 1
    assert launch.torchrun_args() == ["--standalone", "--nproc-per-node=1"]


def test_more_processes_per_machine_than_it_has_is_refused():
    slots, described = device_slots()
    with pytest.raises(ConfigError) as refused:
        resolve_launch(environ={"NPROC_PER_NODE": str(slots + 1)})
    assert refused.value.lines == [
        f"NPROC_PER_NODE={slots + 1}: this machine has {described}; "
        f"use NPROC_PER_NODE={slots} or fewer"
    ]


def test_inside_the_launcher_the_variables_are_not_read_again_and_flags_are_refused():
    # torchrun's processes inherit NNODES & co. and get MASTER_PORT, RANK, LOCAL_RANK from it
    inside = {"NNODES": "2", "NODE_RANK": "1", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}
    assert not resolve_launch(environ=inside).torchrun
    with pytest.raises(ConfigError) as refused:
        resolve_launch(nnodes="2", master_port=29500, environ=inside)
    assert refused.value.lines == [
        "--nnodes 2: this command was already started by a launcher with 2 processes; "
        "drop --nnodes",
        "--master-port 29500: this command was already started by a launcher with 2 "
        "processes; drop --master-port",
    ]


def test_machines_that_cannot_meet_are_one_line(monkeypatch, capsys, base_config, tmp_path):
    clear_variables(monkeypatch)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the launcher would set it in this process
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(base_config))
    with socket.socket() as busy:  # machine 0's port is taken by another program
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(
            ["train", str(config), "--nnodes", "2", "--master-addr", "127.0.0.1"]
            + ["--master-port", str(port)]
        )
    assert code == LaunchFailed.exit_code
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("tuneforge: error:")]
    assert line.startswith(
        f"tuneforge: error: machine 0 could not meet the other machines at 127.0.0.1:{port} ("
    )
    assert "address already in use" in line and "Traceback" not in err


def test_llamafactory_elastic_launch_is_refused_not_ignored():
    with pytest.raises(ConfigError) as refused:
        resolve_launch(
            environ={"NNODES": "2", "MASTER_ADDR": "node0", "RDZV_ID": "job7", "MAX_RESTARTS": "3"}
        )
    elastic = "(RDZV_ID, MIN_NNODES, MAX_NNODES, MAX_RESTARTS)"
    assert refused.value.lines == [
        f"{name}: LLaMA-Factory's elastic launch {elastic} is not supported; unset it, or "
        f"start tuneforge with torchrun and its --rdzv-* options"
        for name in ("RDZV_ID=job7", "MAX_RESTARTS=3")
    ]
    assert not resolve_launch(environ={"RDZV_ID": "job7"}).torchrun  # read only when launching
