"""Tests of the async MLS client (mls_client): storage, settings, scenarios, CLI, crashes."""
