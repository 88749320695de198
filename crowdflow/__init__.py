"""crowdflow: configuration, CLI and the wiring of the service (ingest → detect → alerts → dashboard, store)."""

__version__ = "0.1.0"
