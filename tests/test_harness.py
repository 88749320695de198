from tests.servers import Server, influx_query


def test_mosquitto_fixture_listens(mosquitto: Server) -> None:
    assert mosquitto.proc.poll() is None and mosquitto.port != 1883


def test_influxdb_fixture_answers_queries(influxdb: Server) -> None:
    influx_query(influxdb.url, "", "CREATE DATABASE t")
    res = influx_query(influxdb.url, "", "SHOW DATABASES")
    assert "t" in str(res)
