"""Shared domain model of crowdflow: levels, the site (grids, zones, sensors), readings, zone state, alerts.

Every component package talks to the others only through the values defined here.
"""
