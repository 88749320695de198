"""Who may connect to the shipped broker configuration: nobody anonymous, nobody with a wrong password, on
either listener; a rotated password takes effect on a reload."""

from __future__ import annotations

import time

from crowdflow.broker import write_credentials
from domain.site import Site
from tests.security.conftest import TIMEOUT_S, Client, SecuredMosquitto, connect


def _refused(c: Client) -> bool:
    return c.connack is not None and c.connack.is_failure


def test_an_anonymous_client_is_refused_on_both_listeners(broker: SecuredMosquitto) -> None:
    assert broker.creds.tls is not None
    for v5 in (False, True):
        assert _refused(connect(broker.plain_port, v5=v5, expect_refused=True))
        tls = connect(broker.tls_port, tls=True, ca_file=broker.creds.tls.ca_file, v5=v5, expect_refused=True)
        assert _refused(tls)
    assert "not authorised" in broker.log_text()


def test_a_wrong_password_or_an_unknown_user_is_refused(broker: SecuredMosquitto, clients: list[Client]) -> None:
    right = broker.creds.password("seg1-west")
    assert _refused(connect(broker.plain_port, "seg1-west", right + "x", expect_refused=True))
    assert _refused(connect(broker.plain_port, "seg1-west", broker.creds.password("seg1-east"), expect_refused=True))
    assert _refused(connect(broker.plain_port, "intruder", right, expect_refused=True))
    assert _refused(connect(broker.plain_port, "seg1-west", "", expect_refused=True))
    clients.append(connect(broker.plain_port, "seg1-west", right))  # and the right one is let in


def test_a_rotated_password_replaces_the_old_one_after_a_reload(
    broker: SecuredMosquitto, clients: list[Client], mini_site: Site
) -> None:
    old = broker.creds.password("seg1-west")
    other = broker.creds.password("seg1-east")
    rotated_conn = connect(broker.plain_port, "seg1-west", old)
    other_conn = connect(broker.plain_port, "seg1-east", other)
    clients += [rotated_conn, other_conn]
    creds = write_credentials(mini_site, broker.creds.dir, simulator="crowdflow-sim", rotate=["seg1-west"])
    assert creds.created == ("seg1-west",)
    new = creds.password("seg1-west")
    assert new != old and creds.password("seg1-east") == other
    broker.reload()
    deadline = time.monotonic() + TIMEOUT_S  # the broker applies SIGHUP on its next loop turn
    while not _refused(connect(broker.plain_port, "seg1-west", old, expect_refused=True)):
        assert time.monotonic() < deadline, "the old password still works after the reload"
        time.sleep(0.1)
    # Mosquitto 2.0.11 re-checks connected clients on the reload: the old password's connection is closed,
    # the others stay up (one pass over all clients, so the SUBACK after the close proves it).
    rotated_conn.wait("the old password's connection closed", lambda: rotated_conn.disconnects > 0)
    other_conn.sync()
    assert other_conn.disconnects == 0
    clients.append(connect(broker.plain_port, "seg1-west", new))
    clients.append(connect(broker.plain_port, "seg1-east", other))  # the others keep theirs
