"""The edge daemon: serial frames in, int8 predictions with intervals, OOD statistics and drift alerts out over MQTT.

Where things live
-----------------
- :mod:`edge.daemon.app`: :class:`Daemon`, which builds the stages below, hands each the callables it needs and owns
  the threads, the housekeeping loop and the watchdog's view (:meth:`Daemon.health`).
- :mod:`edge.daemon.reader`: the reader thread (:class:`~edge.daemon.reader.Reader`).
- :mod:`edge.daemon.frames`: the inference thread (:class:`~edge.daemon.frames.InferenceStage`): frame dispatch,
  micro-batches, the device's STATUS, spectra, drift, bundle swaps.
- :mod:`edge.daemon.status_wait`: spectra waiting for the device's STATUS
  (:class:`~edge.daemon.status_wait.StatusWait`).
- :mod:`edge.daemon.annotations`: predictions held for their ANNOTATION
  (:class:`~edge.daemon.annotations.AnnotationWait`).
- :mod:`edge.daemon.lines`: LINE frames as plain values (split into spectra, judged whole, their message).
- :mod:`edge.daemon.seq_mark`: the last device seq committed, kept across restarts
  (:class:`~edge.daemon.seq_mark.SeqMark`).
- :mod:`edge.daemon.capture`: dark/white references and capture commands
  (:class:`~edge.daemon.capture.ReferenceCapture`).
- :mod:`edge.daemon.reload`: verified bundle reloads (:class:`~edge.daemon.reload.BundleReloader`);
  :mod:`edge.daemon.config_reload`: configuration reloads (SIGHUP).
- :mod:`edge.daemon.install`: a bundle put in service from another file, copied over ``bundle.path``
  (:func:`~edge.daemon.install.install_over`).
- :mod:`edge.daemon.deploy`: bundles sent over MQTT (:class:`~edge.daemon.deploy.DeployControl`).
- :mod:`edge.daemon.probation`: a deployed bundle on probation and its return
  (:class:`~edge.daemon.probation.Probation`).
- :mod:`edge.daemon.shadow`: a challenger bundle beside the serving one (:class:`~edge.daemon.shadow.ShadowMode`).
- :mod:`edge.daemon.control`: remote commands, from validation to execution
  (:class:`~edge.daemon.control.CommandControl`); :mod:`edge.daemon.control_watch`: check-standard measurements
  (:class:`~edge.daemon.control_watch.ControlWatch`); :mod:`edge.daemon.drift_events`: drift events as messages and
  alerts, ``reset_drift`` (:class:`~edge.daemon.drift_events.DriftBaselines`).
- :mod:`edge.daemon.outbound`: every message on its way to the link (:class:`~edge.daemon.outbound.Outbound`,
  the publisher thread).
- :mod:`edge.daemon.status`: active alerts and the metrics payload; :mod:`edge.daemon.auditing`: audit records.
- :mod:`edge.daemon.link`: the MQTT side (:class:`Link`, :class:`MqttLink`).
- :mod:`edge.daemon.device`, :mod:`edge.daemon.values`: what the device announced; the values the stages hand over.
- :mod:`edge.daemon.run`: :func:`run_daemon`, what ``spectro-edge run`` runs (signals, watchdog, sd_notify, audit).

Threads and hand-overs
----------------------
::

    serial port --reader--> frames queue --inference--> outbox (SQLite) --mqtt--> broker
                                                              ^            (edge.publish drains it)
                  housekeeping: bundle watch + verified reload, command execution, metrics
                                --> messages queue --publisher--^

- **reader** (``spectro-reader``): :class:`firmware_bridge.transport.SerialTransport` -> decoded frames, stamped
  with their arrival time, into the *frames queue*.  Serial outages, CRC errors and skipped bytes are counted by
  the transport and its decoder and reported in the metrics.
- **inference** (``spectro-inference``): owns the bundle's runtime (a TFLite interpreter is not thread-safe), the
  references and the drift monitor.  DARK/REFERENCE frames update the references, STATUS frames the wavelength
  axis, SPECTRUM frames go through :class:`edge.inference.InferenceEngine` and the drift monitor; the resulting
  predictions and drift alerts are encoded and committed to the outbox by this thread itself (one thread
  hand-over less per frame; see docs/daemon.md).  A new bundle is swapped in here, between two frames, after it
  was verified elsewhere.
- **publisher** (``spectro-publisher``): encodes the messages of the other threads (metrics, status, command
  responses) and commits them to the durable outbox, which :mod:`edge.publish.mqtt` drains to the broker in order;
  nothing leaves the device without first being on disk.
- **housekeeping** (``spectro-housekeeping``): polls the bundle file, loads, verifies and self-tests a new bundle
  (a reload never stalls inference), executes commands, and publishes metrics every ``metrics.period_s``.

Back-pressure policy
--------------------
The frames queue is bounded by ``queues.frames_max`` and applies ``queues.policy`` to spectra (``drop_oldest`` by
default: under overload the freshest spectra are predicted; simulator ANNOTATION frames may be dropped too);
reference, status and acknowledgement frames are never dropped.  Every dropped spectrum is counted
(``frames_dropped_queue_full``), and every gap in the device's sequence numbers is counted too
(``frames_lost_seq_gap``: frames lost on the wire, to CRC errors or to the queue), next to the decoder's own
counters (``decoder_*``), so lost frames are visible end to end; queue drops and gaps are logged too (at most once
per 10 s each).  The inference thread waits for its outbox
commits (a computed prediction or a drift alert is never thrown away here); a slow disk pushes the overload back
onto the frames queue, where it is counted.  The messages queue (``queues.messages_max``) blocks the other
threads when full, never dropping.  The outbox has its own bound and policy (``outbox.full_policy``).

Quality and rejections
----------------------
A spectrum that does not match the bundle's input contract (the signal the device announced in its STATUS, counts
until it does; pixel count, pixel format, wavelength axis), has non-finite counts, or lacks the references its
pipeline needs is counted (``frames_rejected_<reason>``) and never predicted on.  A signal mismatch is also an
alert (``signal_mismatch``) of the retained status, and a reload that would introduce one is refused.  Every other
spectrum gets a prediction whose ``quality`` is the most severe of saturated, stale reference, out of distribution
and instrument fault (``ok`` when none applies).

Retained status
---------------
:class:`ActiveAlerts` (:mod:`edge.daemon.status`) holds the conditions active now (signal mismatch, outbox full,
missing or stale reference, each drift detector in alert); every change of that set, of the model, of the device's
signal or boot id re-publishes the retained status, which is built at the moment it is sent (and by the MQTT client
at every reconnect).

Watchdog
--------
The main thread checks the daemon every :data:`WATCHDOG_POLL_S` (:meth:`Daemon.health`): a stage thread that ended
(reader, inference, publisher, housekeeping), an inference loop that has not come round for :data:`INFERENCE_STALL_S`,
or a dead MQTT network or drain thread (:meth:`edge.publish.mqtt.MqttPublisher.failure`) ends the daemon with exit
code 2, so that systemd's ``Restart=always`` starts a fresh one instead of leaving a process that predicts into an
outbox nothing drains.  Under systemd (``$NOTIFY_SOCKET``) it sends ``READY=1`` once started and, with
``WatchdogSec=`` in the unit, ``WATCHDOG=1`` only while every stage is healthy (:mod:`edge.sdnotify`), which also
covers a main thread that hangs.

Shutdown
--------
SIGTERM or SIGINT (or ``stop_event``) stops the reader, lets inference finish what is queued, commits every
message to the outbox, gives the MQTT client ``outbox.flush_timeout_s`` to deliver the backlog, then publishes
the retained ``offline`` status and disconnects.  What is not delivered by then stays in the outbox for the next
start.
"""

from edge.daemon.app import (
    HELLO_AFTER_S,
    HOUSEKEEPING_POLL_S,
    INFERENCE_STALL_S,
    REQUEST_INTERVAL_S,
    WATCHDOG_POLL_S,
    Daemon,
    drift_config_from,
)
from edge.daemon.auditing import AuditHooks, bundle_audit, signer_key_id
from edge.daemon.capture import CAPTURE_TIMEOUT_PER_FRAME_S, CAPTURE_TIMEOUT_S, ReferenceCapture
from edge.daemon.config_reload import LIVE_MQTT_KEYS, ConfigReloader, config_changes
from edge.daemon.control import CommandControl
from edge.daemon.device import (
    DEVICE_TEXT_MAX,
    FULL_SCALE_COUNTS,
    SEQ_GAP_MAX,
    printable,
    status_axis_problem,
    status_signal,
)
from edge.daemon.frames import (
    ANNOTATION_WAIT_S,
    INFERENCE_BATCH_MAX,
    INFERENCE_POLL_S,
    STATUS_WAIT_S,
    InferenceStage,
)
from edge.daemon.link import Link, MqttLink
from edge.daemon.outbound import Outbound
from edge.daemon.reader import Reader
from edge.daemon.reload import BundleReloader
from edge.daemon.run import run_daemon
from edge.daemon.status import ActiveAlerts, metrics_payload
from edge.daemon.values import OutgoingTuple, _Received

__all__ = [
    "ANNOTATION_WAIT_S",
    "ActiveAlerts",
    "AuditHooks",
    "BundleReloader",
    "CAPTURE_TIMEOUT_PER_FRAME_S",
    "CAPTURE_TIMEOUT_S",
    "CommandControl",
    "ConfigReloader",
    "DEVICE_TEXT_MAX",
    "Daemon",
    "FULL_SCALE_COUNTS",
    "HELLO_AFTER_S",
    "HOUSEKEEPING_POLL_S",
    "INFERENCE_BATCH_MAX",
    "INFERENCE_POLL_S",
    "INFERENCE_STALL_S",
    "InferenceStage",
    "LIVE_MQTT_KEYS",
    "Link",
    "MqttLink",
    "Outbound",
    "OutgoingTuple",
    "REQUEST_INTERVAL_S",
    "Reader",
    "ReferenceCapture",
    "SEQ_GAP_MAX",
    "STATUS_WAIT_S",
    "WATCHDOG_POLL_S",
    "_Received",
    "bundle_audit",
    "config_changes",
    "drift_config_from",
    "metrics_payload",
    "printable",
    "run_daemon",
    "signer_key_id",
    "status_axis_problem",
    "status_signal",
]
