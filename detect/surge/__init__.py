"""Surge detection: per zone, how far the inflow departs from its learned usual and the capacity profile.

One algorithm per module (profile_ratio, seasonal_quantile, forecast_residual, drift_residual), each a
`detect.base.Detector`; `monitor.SurgeMonitor` runs one clone per zone and turns flags into Detections;
`compare.compare_on_scenarios` measures them on simulated days and picks the default.
"""
