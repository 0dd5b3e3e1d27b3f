"""Coverage-guided fuzz targets for mls_core under atheris (docs/fuzzing.md)."""
