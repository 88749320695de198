"""crowdflow store."""
