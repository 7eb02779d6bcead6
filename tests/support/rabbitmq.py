"""A real RabbitMQ cluster (its MQTT plugin) of two or more nodes on loopback for tests: own epmd, data
directories, node names and free ports under a temporary directory; every process started here is ended by
:meth:`RabbitCluster.close`.  Nothing touches a system-wide RabbitMQ service (its configuration, data, cookie or
epmd port).

Usage::

    with RabbitCluster(tmp_path / "rabbit", nodes=3) as cluster:   # skips the test when RabbitMQ is not installed
        cluster.mqtt_ports        # one MQTT listener per node, 127.0.0.1
        cluster.kill(0)           # SIGKILL node 0's processes (a crashed or powered-off node)

The MQTT plugin keeps a persistent session's subscriptions in a quorum queue here (``durable_queue_type``), so
they outlive the loss of one node of three.  The first node boots alone; the others join it at their first boot
through ``classic_config`` peer discovery (no ``rabbitmqctl join_cluster``); :meth:`RabbitCluster.start` checks
with ``rabbitmqctl cluster_status`` that every node runs in one cluster before it returns.  Debian's
``/usr/sbin/rabbitmq-server`` switches to the ``rabbitmq`` user and the system paths; this module runs the scripts
behind it (``/usr/lib/rabbitmq/bin``) with its own ``RABBITMQ_*`` environment instead.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.harness.processes import free_port

__all__ = ["RabbitCluster", "rabbitmq_bin_dir"]

#: Where Debian's rabbitmq-server package puts the real scripts (the ones in /usr/sbin switch users).
DEBIAN_BIN = Path("/usr/lib/rabbitmq/bin")
#: A node's boot (Erlang VM, Mnesia, plugins) on a loaded 2-core machine; never a speed goal.
BOOT_TIMEOUT_S = 120.0


def rabbitmq_bin_dir() -> Path | None:
    """The directory holding ``rabbitmq-server`` and ``rabbitmqctl`` (Debian's, else the ones on PATH), or None."""
    if (DEBIAN_BIN / "rabbitmq-server").exists():
        return DEBIAN_BIN
    found = shutil.which("rabbitmq-server")
    return Path(found).parent if found else None


class RabbitCluster:
    """``nodes`` RabbitMQ nodes, clustered, each with the MQTT plugin on its own loopback port.

    Parameters
    ----------
    workdir : Path
        Holds each node's configuration, data and logs, the Erlang cookie and epmd's log.
    nodes : int
        Cluster size: 3, the smallest cluster in which a quorum queue (and the MQTT plugin's Raft-based client-id
        tracking) keeps a majority when one node is lost.
    durable_queue_type : {"quorum", "classic"}
        The queue type of a persistent (``clean_session = false``) QoS 1 subscription (the MQTT plugin's
        ``durable_queue_type``): "quorum" replicates it on every node; "classic", the plugin's default, keeps it on
        the node the client subscribed through only, so it is unusable while that node is down.
    """

    def __init__(self, workdir: Path, *, nodes: int = 3, durable_queue_type: str = "quorum") -> None:
        bin_dir = rabbitmq_bin_dir()
        epmd = shutil.which("epmd") or next((str(p) for p in Path("/usr/lib/erlang").glob("erts-*/bin/epmd")), None)
        if bin_dir is None or epmd is None:
            pytest.skip("RabbitMQ is not installed (`apt-get install rabbitmq-server`; `make broker` does it)")
        self.bin_dir = bin_dir
        self.epmd_bin = epmd
        self.durable_queue_type = durable_queue_type
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        tag = secrets.token_hex(3)
        self.names = [f"spectro{i}-{tag}@localhost" for i in range(nodes)]
        self.mqtt_ports = [free_port() for _ in range(nodes)]
        self.epmd_port = free_port()
        self._amqp_ports = [free_port() for _ in range(nodes)]
        self._dist_ports = [free_port() for _ in range(nodes)]
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * nodes
        self._epmd: subprocess.Popen[bytes] | None = None
        cookie = self.workdir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)

    # ------------------------------------------------------------------------------------------------ processes
    def _env(self, i: int | None = None) -> dict[str, str]:
        env = dict(os.environ, HOME=str(self.workdir), ERL_EPMD_PORT=str(self.epmd_port),
                   RABBITMQ_CONF_ENV_FILE=os.devnull, LANG="C.UTF-8", LC_ALL="C.UTF-8")
        if i is not None:
            d = self.node_dir(i)
            env.update(RABBITMQ_NODENAME=self.names[i], RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
                       RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
                       RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
                       RABBITMQ_MNESIA_BASE=str(d / "mnesia"), RABBITMQ_LOG_BASE=str(d / "log"),
                       RABBITMQ_GENERATED_CONFIG_DIR=str(d / "generated"), RABBITMQ_PID_FILE=str(d / "pid"),
                       RABBITMQ_PLUGINS_EXPAND_DIR=str(d / "plugins-expand"),
                       RABBITMQ_FEATURE_FLAGS_FILE=str(d / "feature_flags"),
                       RABBITMQ_DIST_PORT=str(self._dist_ports[i]))
        return env

    def node_dir(self, i: int) -> Path:
        return self.workdir / f"node{i}"

    def _write_config(self, i: int) -> None:
        d = self.node_dir(i)
        d.mkdir(exist_ok=True)
        lines = [
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_ports[i]}",
            "mqtt.allow_anonymous = true",
            "loopback_users = none",
            f"listeners.tcp.default = 127.0.0.1:{self._amqp_ports[i]}",
            "log.console = false",
            "log.file.level = info",
        ]
        if i > 0:  # join the first node at first boot
            lines += ["cluster_formation.peer_discovery_backend = classic_config",
                      f"cluster_formation.classic_config.nodes.1 = {self.names[0]}"]
        (d / "rabbitmq.conf").write_text("\n".join(line for line in lines if line) + "\n")
        (d / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        queue_type = self.durable_queue_type
        (d / "advanced.config").write_text(f"[{{rabbitmq_mqtt, [{{durable_queue_type, {queue_type}}}]}}].\n")

    def _start_node(self, i: int) -> None:
        self._write_config(i)
        out = open(self.node_dir(i) / "console.log", "wb")
        self._procs[i] = subprocess.Popen([str(self.bin_dir / "rabbitmq-server")], env=self._env(i),
                                          cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)  # its own process group: kill() ends all of it
        self._wait_listening(i)

    def _wait_listening(self, i: int) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            proc = self._procs[i]
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"RabbitMQ node {self.names[i]} exited while booting:\n{self.log(i)}")
            try:
                with socket.create_connection(("127.0.0.1", self.mqtt_ports[i]), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"RabbitMQ node {self.names[i]} did not open its MQTT port {self.mqtt_ports[i]} "
                           f"within {BOOT_TIMEOUT_S:.0f} s:\n{self.log(i)}")

    def start(self) -> RabbitCluster:
        """Start epmd and every node; return once they all run in one cluster with their MQTT listeners open."""
        self._epmd = subprocess.Popen([self.epmd_bin, "-port", str(self.epmd_port)], env=self._env(),
                                      stdout=subprocess.DEVNULL, stderr=open(self.workdir / "epmd.log", "wb"))
        try:
            for i in range(len(self.names)):
                self._start_node(i)
            running = self.running_nodes()
            if sorted(running) != sorted(self.names):
                raise RuntimeError(f"expected the cluster to run {self.names}, got {running}:\n{self.log(1)}")
        except BaseException:
            self.close()
            raise
        return self

    def running_nodes(self, via: int = 0) -> list[str]:
        """``rabbitmqctl cluster_status``'s running nodes, as node ``via`` sees them."""
        result = subprocess.run([str(self.bin_dir / "rabbitmqctl"), "-n", self.names[via], "cluster_status",
                                 "--formatter", "json"], env=self._env(), capture_output=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl cluster_status failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace')}")
        return list(json.loads(result.stdout)["running_nodes"])

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (its Erlang VM and helpers): a crash, no goodbye to clients or peers."""
        proc = self._procs[i]
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def log(self, i: int) -> str:
        """The end of node ``i``'s log file (or its console output before the log exists)."""
        logs = sorted((self.node_dir(i) / "log").glob("*.log")) or [self.node_dir(i) / "console.log"]
        try:
            return logs[0].read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def close(self) -> None:
        """End every node (SIGTERM to its process group, SIGKILL after 30 s) and epmd."""
        for proc in self._procs:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._epmd is not None and self._epmd.poll() is None:
            self._epmd.terminate()
            self._epmd.wait(timeout=10)

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
