"""The publish side of the daemon: what it sends to the broker and how.

- :mod:`edge.publish.topics`: the topic layout of a device (``Topics``).
- :mod:`edge.publish.schema`: payload schemas, the validator, ``encode`` (strict: the producer's contract) and
  ``decode`` (tolerant: the consumer's).
- :mod:`edge.publish.messages`: one builder per payload kind, taking every field it emits
  (:mod:`~edge.publish.line_messages`: the ``.../line_prediction`` of a LINE frame, as arrays).
- :mod:`edge.publish.outbox`: the durable SQLite outbox every message is committed to before it is sent, with
  :mod:`~edge.publish.outbox_db` (opening the database) and :mod:`~edge.publish.disk_space` (WAL bound, headroom,
  reserve file).
- :mod:`edge.publish.mqtt`: the MQTT publisher draining the outbox, with :mod:`~edge.publish.client` (the paho
  client, reconnect jitter, takeover detection), :mod:`~edge.publish.inflight` (messages in flight, counters),
  :mod:`~edge.publish.status` (the retained status) and :mod:`~edge.publish.outgoing` (the checks of what a caller
  publishes, refused messages).
- :mod:`edge.publish.log_limit`: rate-limited logging of repeated events.

"""
