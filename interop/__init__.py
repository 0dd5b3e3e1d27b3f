"""The MLS WG interop harness for ``mls_core``: a gRPC ``MLSClient`` server
(``python -m interop.client``) speaking ``mls_client.proto`` of
mlswg/mls-implementations, so the interop test runner can drive our stack against
other implementations."""
