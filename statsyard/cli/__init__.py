"""The ``statsyard`` command: one module per subcommand family.

- :mod:`~statsyard.cli.main`: argument parsing, ``run`` (the service),
  ``config``, and dispatch to the others.
- :mod:`~statsyard.cli.query`: ``query`` and ``series`` on a data directory.
- :mod:`~statsyard.cli.stress`: ``stress``, the load run.
- :mod:`~statsyard.cli.check`: ``check``, the data directory's health.
- :mod:`~statsyard.cli.plot`: ``plot``, a render target to a PNG.
"""
