"""crowdflow ingest."""
