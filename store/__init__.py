"""crowdflow store: zone_state and sensor_reading time series, written off the ingest path.

    from store.factory import open_store   # None → embedded (memory + SQLite); URL → InfluxDB 1.x/2.x/3.x
    store = open_store(url, site=site, embedded_path=...)
    store.write_states(states); store.write_readings(readings)   # enqueue only
    store.history(zone, since, until, every_s=60)                # blocking: in a thread from async code
    store.close()                                                 # writes what is buffered

Only the light protocol module is imported here, so `import store` does not pull in influxdb-client.
"""

from store.base import HISTORY_FIELDS, Store, StoreConfigError, StoreError, StoreStats, StoreUnreachableError

__all__ = ["HISTORY_FIELDS", "Store", "StoreConfigError", "StoreError", "StoreStats", "StoreUnreachableError"]
