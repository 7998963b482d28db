"""Graphite plaintext input: the protocol, tag templates, the listener child.

- :mod:`~statsyard.graphite.templates`: carbon's templates for tag
  extraction from dotted names.
- :mod:`~statsyard.graphite.protocol`: parse one line into a point.
- :mod:`~statsyard.graphite.listener`: the supervised listener actor, with
  its selector-driven TCP/UDP server, pushing into the pipeline's queue.
"""
