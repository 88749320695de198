"""crowdflow crowdflow."""
