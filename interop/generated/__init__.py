"""Code generated from ``interop/mls_client.proto`` by ``interop/generate.sh``; do not edit."""
