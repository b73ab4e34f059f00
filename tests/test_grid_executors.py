"""The ray and slurm executors on real clusters: a local Ray cluster, and a single-node Slurm
(slurmctld + slurmd + munge on localhost) started by the fixture. Both skip, with the reason, when
their software is absent (`pip install ".[ray]"`, `".[slurm]"`; Debian packages slurm-wlm and munge)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import FIXTURE_PLUGINS

from harness.run.store import ResultStore

GRID_PLUGINS = Path(__file__).parent / "grid_plugins"
PLUGINS = ("--plugins-dir", FIXTURE_PLUGINS, "--plugins-dir", GRID_PLUGINS)
SUITE = """
methods: [flaky, killer, {name: flaky, options: {crash_after: 1}}]
datasets: [demo-pairs]
"""


@pytest.fixture
def grid_env(isolated_env, tmp_path):
    data = isolated_env / "data" / "demo-pairs"
    data.mkdir(parents=True)
    (data / "READY").write_text("ok")
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    return {"results": isolated_env / "results", "suite": suite}


def outcomes_of(out: str) -> list[dict]:
    """The --json list; Ray's raylet may print its own note about the killed worker before it."""
    return json.loads(out[out.index("[\n"):])


def check_outcome(code: int, out: str, results: Path) -> None:
    """One cell done, one failed inside the method (record kept), one lost with its worker."""
    assert code == 1
    outcomes = {(o["method"], o["state"]) for o in outcomes_of(out)}
    assert outcomes == {("flaky", "done"), ("flaky", "failed"), ("killer", "failed")}
    records = ResultStore(results).records()
    assert sorted((r["method"]["name"], r["status"]) for r in records) == [("flaky", "failed"), ("flaky", "ok")]


# -- Ray -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason='Ray not installed (pip install ".[ray]")')
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_grid_on_a_local_ray_cluster(ray_cluster, grid_env, cli):
    code, out, err = cli(*PLUGINS, "grid", "--suite", grid_env["suite"], "--executor", "ray", "--json")
    check_outcome(code, out, grid_env["results"])
    code, out, err = cli(*PLUGINS, "grid", "--suite", grid_env["suite"], "--executor", "ray", "--json",
                         "--method", "flaky")
    assert [o["state"] for o in outcomes_of(out)] == ["cached", "failed"]  # nothing ran twice


# -- Slurm -----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SLURM_CONF = """ClusterName=harness-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """munged, slurmctld and slurmd on this host, in a temporary folder; stopped by their pid files."""
    pytest.importorskip("submitit", reason='submitit not installed (pip install ".[slurm]")')
    daemons = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")
    missing = [name for name in daemons if not (shutil.which(name) or shutil.which(name, path="/usr/sbin"))]
    if missing:
        pytest.skip(f"Slurm not installed (missing {', '.join(missing)}; Debian: apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("the single-node Slurm fixture runs slurmd as root")
    root = tmp_path_factory.mktemp("slurm")
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname(), root=root, ctld_port=_free_port(),
                                      slurmd_port=_free_port(), cpus=os.cpu_count() or 1))
    sbin = lambda name: shutil.which(name) or shutil.which(name, path="/usr/sbin")  # noqa: E731
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run([sbin("munged"), f"--key-file={key}", f"--socket={root}/munge.socket",
                    f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/seed",
                    "--force"], check=True, env=env)
    subprocess.run([sbin("slurmctld"), "-f", str(conf)], check=True, env=env)
    subprocess.run([sbin("slurmd"), "-f", str(conf)], check=True, env=env)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"single-node Slurm did not come up (sinfo: {state!r}); logs in {root}")
        yield root
    finally:
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = root / f"{name}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), 15)
                except (ProcessLookupError, ValueError):
                    pass
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


def test_grid_as_a_slurm_job_array(slurm_cluster, grid_env, cli):
    code, out, err = cli(*PLUGINS, "grid", "--suite", grid_env["suite"], "--executor", "slurm", "--json",
                         "--executor-option", "partition=debug", "--executor-option", "max_parallel=2",
                         "--executor-option", "time=5")
    check_outcome(code, out, grid_env["results"])
    scripts = list((grid_env["results"] / "grid" / "executors" / "slurm").rglob("*submission.sh"))
    assert scripts and "#SBATCH --array=0-2%2" in scripts[0].read_text()
    assert "#SBATCH --partition=debug" in scripts[0].read_text()


@pytest.mark.skipif(bool(shutil.which("slurmd", path="/usr/sbin:/usr/bin")),
                    reason="Slurm is installed: the real single-node cluster test covers the slurm executor")
def test_grid_through_submitits_local_executor(grid_env, cli):
    """The fallback where Slurm cannot run: the same job array through submitit's local executor."""
    pytest.importorskip("submitit", reason='submitit not installed (pip install ".[slurm]")')
    code, out, err = cli(*PLUGINS, "grid", "--suite", grid_env["suite"], "--executor", "slurm", "--json",
                         "--executor-option", "cluster=local")
    check_outcome(code, out, grid_env["results"])
