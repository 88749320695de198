"""crowdflow dashboard."""
