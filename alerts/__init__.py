"""crowdflow alerts."""
