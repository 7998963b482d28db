"""The ingest pipeline, in the order a point travels through it.

- :mod:`~statsyard.pipeline.ledger`: where every accepted point ends
  (pushed = written + invalid + lost + pending) and the queue's contents,
  which outlive a crash of the queue actor.
- :mod:`~statsyard.pipeline.queue_messages`: what the queue is asked.
- :mod:`~statsyard.pipeline.blocking_queue`: the bounded queue actor with
  back-pressure.
- :mod:`~statsyard.pipeline.queue_client`: the blocking client that follows
  the queue through restarts.
- :mod:`~statsyard.pipeline.ingest_consumer`: pops batches, validates them,
  hands the valid points to the writer.
- :mod:`~statsyard.pipeline.timestamp_writer`: writes batches durably to
  :mod:`statsyard.storage` and acknowledges them to the ledger.

Nothing here imports the metrics, the Graphite input or the facade: they
plug in from above, as observers and clients.
"""
