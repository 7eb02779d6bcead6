"""The publish side of the daemon: what it sends to the broker and how.

- :mod:`edge.publish.topics`: the topic layout of a device (``Topics``).
- :mod:`edge.publish.schema`: payload schemas, the validator, ``encode`` (strict: the producer's contract) and
  ``decode`` (tolerant: the consumer's).
- :mod:`edge.publish.messages`: one builder per payload kind, taking every field it emits.
- :mod:`edge.publish.outbox`: the durable SQLite outbox every message is committed to before it is sent.
- :mod:`edge.publish.mqtt`: the MQTT 5 publisher draining the outbox, with the client's construction in
  :mod:`edge.publish.client`.
"""
