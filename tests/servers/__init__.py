"""Start and stop real servers (Prosody, Synapse) for integration tests."""
