"""crowdflow detect."""
