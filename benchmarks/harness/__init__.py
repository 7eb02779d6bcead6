"""The whole loop on one machine, started as production starts it: broker, simulator, ``spectro-edge run``, subscriber.

One harness for the demo (``spectro-bench demo``), the benchmarks (``spectro-bench loop``) and the end-to-end tests:

- :func:`ensure_trained` trains a training config with ``spectro-train fit`` in a child process (TensorFlow never
  enters the caller) and caches the result under a key made of the config's SHA-256 (and the trainer's sources');
- :func:`stream_rows` picks the rows a loop streams (a test split of a config, or column selectors on a dataset)
  and writes them as the ``.npz`` that ``spectro-sim --dataset`` reads, with the bundle's targets as ``y`` in the
  bundle's order, so the simulator's ANNOTATION frames carry the reference value of every prediction;
- :func:`start_broker` starts ``mosquitto`` on a free local port, or the embedded ``amqtt`` broker (an install
  requirement) when no mosquitto is installed; :class:`Mosquitto` is one mosquitto process with its lifecycle
  (stop, kill, restart on the same port), which the benchmarks and the tests' broker (with TLS, passwords and an
  ACL added) use;
- :func:`simulator_command` is ``spectro-sim --pty`` (the production simulator's command line);
- :func:`write_edge_config` writes the daemon's TOML through :func:`edge.config_example.render_config` (the tests'
  ``write_config`` is it with the tests' identity, commands and HMAC key), and :func:`daemon_command` is
  ``spectro-edge run --config``, the systemd unit's command line (the installed console script; ``python -m
  edge.cli run`` where the package is not installed);
- :func:`spawn` starts one process with its log (:class:`Proc`, what the tests' ``procs`` fixture holds),
  :class:`Processes` the processes of one run, ended together; :func:`child_env` is their environment;
- :class:`Subscriber` is a paho-mqtt client on a device's topics collecting predictions (deduplicated by ``seq``),
  drift alerts, the retained status, metrics and command responses; the end-to-end tests' ``subscriber`` fixture is
  the same class on their device, with a persistent session; ``keep_bodies=False`` keeps only the sequence
  numbers (the soak's million predictions); :func:`read_retained` reads one retained message;
- :func:`run_loop` streams once through all of them and returns what arrived (:class:`LoopRun`).

``python -m benchmarks.harness --embedded-broker PORT`` runs the embedded broker (what :func:`start_broker` starts).
"""

from __future__ import annotations

from benchmarks.harness.broker import Broker, start_broker
from benchmarks.harness.commands import (
    daemon_command,
    frames_sent,
    read_first_line,
    simulator_command,
    write_edge_config,
)
from benchmarks.harness.errors import HarnessError
from benchmarks.harness.loop_run import LoopRun, run_loop
from benchmarks.harness.mosquitto import Mosquitto, find_mosquitto
from benchmarks.harness.processes import Proc, Processes, child_env, end_process, free_port, repo_root, spawn
from benchmarks.harness.rows import (
    Stream,
    check_contract,
    classes_in_bundle_order,
    dataset_arrays,
    dataset_file,
    dataset_of_config,
    offline_inputs,
    parse_selectors,
    select_rows,
    selectors_of_test_set,
    stream_rows,
    test_rows_of_config,
)
from benchmarks.harness.settings import DARK_COUNTS, DEVICE, LINE, SITE, TOPIC_PREFIX, WHITE_COUNTS
from benchmarks.harness.subscriber import Inbox, Subscriber, read_retained
from benchmarks.harness.training import (
    TrainedModel,
    cache_key,
    config_digest,
    default_cache_dir,
    ensure_trained,
    load_training_config,
    train,
)

__all__ = [
    "DARK_COUNTS",
    "DEVICE",
    "LINE",
    "SITE",
    "TOPIC_PREFIX",
    "WHITE_COUNTS",
    "Broker",
    "Mosquitto",
    "HarnessError",
    "Inbox",
    "LoopRun",
    "Proc",
    "Processes",
    "Stream",
    "Subscriber",
    "TrainedModel",
    "cache_key",
    "check_contract",
    "classes_in_bundle_order",
    "child_env",
    "config_digest",
    "daemon_command",
    "dataset_arrays",
    "dataset_file",
    "dataset_of_config",
    "default_cache_dir",
    "end_process",
    "ensure_trained",
    "find_mosquitto",
    "frames_sent",
    "free_port",
    "load_training_config",
    "offline_inputs",
    "parse_selectors",
    "read_first_line",
    "read_retained",
    "repo_root",
    "run_loop",
    "select_rows",
    "selectors_of_test_set",
    "test_rows_of_config",
    "simulator_command",
    "spawn",
    "start_broker",
    "stream_rows",
    "train",
    "write_edge_config",
]
