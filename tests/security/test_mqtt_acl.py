"""The shipped broker configuration's ACL on a real Mosquitto: each sensor publishes only on its own topics,
only the service reads them and publishes alerts, alert readers only read alerts."""

from __future__ import annotations

from domain.messages import ALERT_TOPIC_PREFIX, DEADLETTER_TOPIC, SIM_CLOCK_TOPIC, STATE_TOPIC_PREFIX, SUBSCRIPTION
from domain.site import Site
from tests.security.conftest import Client, SecuredMosquitto, connect


def _as(broker: SecuredMosquitto, clients: list[Client], user: str, *, v5: bool = False) -> Client:
    c = connect(broker.plain_port, user, broker.creds.password(user), v5=v5)
    clients.append(c)
    return c


def test_a_sensor_cannot_publish_into_another_sensors_topic(broker: SecuredMosquitto, clients: list[Client]) -> None:
    service = _as(broker, clients, "crowdflow")
    service.subscribe(SUBSCRIPTION)
    west = _as(broker, clients, "seg1-west")
    spoof = "dt/crowdflow/riverside/seg-1/seg1-east/count"  # seg1-east's topic
    west.publish(spoof, b'{"spoofed": true}')
    west.publish("dt/crowdflow/riverside/seg-1/seg1-west/count", b'{"own": true}')  # the marker
    service.wait("seg1-west's own reading", lambda: len(service.messages) >= 1)
    service.sync()
    assert service.topics() == ["dt/crowdflow/riverside/seg-1/seg1-west/count"]


def test_mqtt5_tells_the_sensor_its_publish_was_not_authorised(broker: SecuredMosquitto, clients: list[Client]) -> None:
    west = _as(broker, clients, "seg1-west", v5=True)
    denied = west.publish("dt/crowdflow/riverside/seg-1/seg1-east/count")
    own = west.publish("dt/crowdflow/riverside/seg-1/seg1-west/count")
    assert denied is not None and own is not None
    assert denied.value == 0x87, f"expected 'Not authorized', got {denied}"
    assert not own.is_failure, own  # success, or "no matching subscribers"


def test_a_sensor_reads_nothing_and_cannot_publish_alerts_or_the_sim_clock(
    broker: SecuredMosquitto, clients: list[Client]
) -> None:
    service = _as(broker, clients, "crowdflow")
    service.subscribe(SUBSCRIPTION)
    service.subscribe(SIM_CLOCK_TOPIC)
    reader = _as(broker, clients, "alerts-reader")
    reader.subscribe(f"{ALERT_TOPIC_PREFIX}/#")
    snoop = _as(broker, clients, "seg1-west")
    # Mosquitto 2.0.11 grants these subscriptions and then delivers nothing the ACL does not let it read.
    for topic in (SUBSCRIPTION, "dt/crowdflow/riverside/seg-1/seg1-east/count", f"{ALERT_TOPIC_PREFIX}/#"):
        snoop.subscribe(topic)
    east = _as(broker, clients, "seg1-east")
    east.publish("dt/crowdflow/riverside/seg-1/seg1-east/count", b'{"reading": 1}')
    snoop.publish(f"{ALERT_TOPIC_PREFIX}/seg-1", b'{"fake": "alert"}', retain=True)
    snoop.publish(SIM_CLOCK_TOPIC, b'{"epoch": 0}')
    snoop.publish(DEADLETTER_TOPIC, b"{}")
    _as(broker, clients, "crowdflow-out").publish(f"{ALERT_TOPIC_PREFIX}/seg-2", b'{"real": "alert"}', retain=True)
    service.wait("seg1-east's reading", lambda: len(service.messages) >= 1)
    reader.wait("the service's alert", lambda: len(reader.messages) >= 1)
    for c in (service, reader, snoop):
        c.sync()
    assert service.topics() == ["dt/crowdflow/riverside/seg-1/seg1-east/count"]  # no fake sim clock
    assert reader.topics() == [f"{ALERT_TOPIC_PREFIX}/seg-2"]  # no fake alert
    assert snoop.messages == []  # neither the other sensor's reading nor the alert
    # A reader connecting later gets the retained alerts: only the service's. (The same user: it replaces the
    # first reader's connection, as the broker ties client ids to user names.)
    late = _as(broker, clients, "alerts-reader")
    late.subscribe(f"{ALERT_TOPIC_PREFIX}/#")
    late.sync()
    assert late.messages == [(f"{ALERT_TOPIC_PREFIX}/seg-2", b'{"real": "alert"}', True)]


def test_the_service_reads_every_sensor_and_publishes_alerts_and_dead_letters(
    broker: SecuredMosquitto, clients: list[Client], mini_site: Site
) -> None:
    service = _as(broker, clients, "crowdflow", v5=True)
    service.subscribe(SUBSCRIPTION)
    out = _as(broker, clients, "crowdflow-out", v5=True)  # the service's publishing connection
    reader = _as(broker, clients, "alerts-reader")
    reader.subscribe(f"{ALERT_TOPIC_PREFIX}/#")
    expected = []
    for sid, sensor in mini_site.sensors.items():
        topic = f"dt/crowdflow/{mini_site.zones[sensor.zone].grid}/{sensor.zone}/{sid}/status"
        _as(broker, clients, sid).publish(topic, b'{"state": "online"}')
        expected.append(topic)
    service.wait("every sensor's message", lambda: len(service.messages) >= len(expected))
    assert sorted(service.topics()) == sorted(expected)
    for topic in (DEADLETTER_TOPIC, f"{STATE_TOPIC_PREFIX}/plaza", f"{ALERT_TOPIC_PREFIX}/plaza"):
        rc = out.publish(topic, b'{"level": 2}', retain=topic.startswith(ALERT_TOPIC_PREFIX))
        assert rc is not None and not rc.is_failure, f"{topic}: {rc}"
    reader.wait("the alert", lambda: len(reader.messages) >= 1)
    assert reader.messages == [(f"{ALERT_TOPIC_PREFIX}/plaza", b'{"level": 2}', False)]


def test_an_alert_reader_cannot_publish_alerts_or_read_sensors(broker: SecuredMosquitto, clients: list[Client]) -> None:
    service = _as(broker, clients, "crowdflow")
    service.subscribe(SUBSCRIPTION)
    reader = _as(broker, clients, "alerts-reader", v5=True)
    reader.subscribe(SUBSCRIPTION)
    rc = reader.publish(f"{ALERT_TOPIC_PREFIX}/plaza", b'{"fake": true}', retain=True)
    assert rc is not None and rc.value == 0x87
    _as(broker, clients, "plaza-gate").publish("dt/crowdflow/riverside/plaza/plaza-gate/count", b"{}")
    service.wait("plaza-gate's reading", lambda: len(service.messages) >= 1)  # routed by now
    reader.sync()
    assert reader.messages == []


def test_the_simulator_publishes_for_every_sensor_and_the_clock(
    broker: SecuredMosquitto, clients: list[Client]
) -> None:
    service = _as(broker, clients, "crowdflow")
    service.subscribe(SUBSCRIPTION)
    service.subscribe(SIM_CLOCK_TOPIC)
    sim = _as(broker, clients, "crowdflow-sim", v5=True)
    topics = [
        SIM_CLOCK_TOPIC,
        "dt/crowdflow/riverside/seg-1/seg1-west/count",
        "dt/crowdflow/riverside/seg-2/seg2-gate/count",
    ]
    for t in topics:
        rc = sim.publish(t)
        assert rc is not None and not rc.is_failure, f"{t}: {rc}"
    rc = sim.publish(f"{ALERT_TOPIC_PREFIX}/seg-1")
    assert rc is not None and rc.value == 0x87, "the simulator must not publish alerts"
    service.wait("the simulator's messages", lambda: len(service.messages) >= len(topics))
    assert service.topics() == topics


def test_a_valid_user_cannot_take_over_the_services_session_with_its_client_id(
    broker: SecuredMosquitto, clients: list[Client]
) -> None:
    """use_username_as_clientid: the intruder's client id becomes its user name, so the service's connection
    (and its queued QoS 1 readings) stay. Without it Mosquitto closes the older connection with that id."""
    service = connect(broker.plain_port, "crowdflow", broker.creds.password("crowdflow"), client_id="crowdflow-service")
    clients.append(service)
    service.subscribe(SUBSCRIPTION)
    intruder = connect(
        broker.plain_port, "seg1-west", broker.creds.password("seg1-west"), client_id="crowdflow-service"
    )  # a sensor with a valid password, claiming the service's id
    clients.append(intruder)
    service.sync()  # a round trip after the intruder's CONNACK: fails if the broker closed the service
    intruder.publish("dt/crowdflow/riverside/seg-1/seg1-west/count", b"{}")
    service.wait("the sensor's reading", lambda: len(service.messages) >= 1)
    assert service.disconnects == 0, "the service's connection was closed by a client claiming its id"
    assert "closing old connection" not in broker.log_text()
