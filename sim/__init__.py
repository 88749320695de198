"""crowdflow sim."""
