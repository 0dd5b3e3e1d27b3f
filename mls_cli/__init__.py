"""``mls-bridge``: the command line, the application layer above :mod:`mls_client`,
:mod:`bridge` and the transports (``python -m mls_cli`` or the ``mls-bridge`` script)."""
