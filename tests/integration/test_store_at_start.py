"""A store that is away when `vitalflow run` starts is reported at once, with its server.

Before, nothing was said until the first message needed the store; an idle flow pointed at a
wrong port looked healthy.
"""

from __future__ import annotations

import signal
import socket

from pipeline_harness import FlowUnderTest, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_store_away_at_start_is_reported_with_its_server_before_any_message(
    flow: FlowUnderTest,
) -> None:
    port = free_port()
    flow.mongo_url = f"mongodb://flow:s3cret@127.0.0.1:{port}"
    # A topic of its own: other programs' traffic on the device topics would make the flow
    # wait out the absent store in a lookup, and the clean stop would become the forced one.
    flow.extra_env["VITALFLOW_MQTT_TOPICS"] = f"vf_test_{flow.uid}/quiet"
    flow.start()
    wait_for(
        lambda: f"ping on mongodb 127.0.0.1:{port}/{flow.db_name} failed" in flow.logs(),
        30,
        flow,
        "a warning naming the store",
    )
    flow.assert_running()
    assert flow.process is not None
    flow.process.send_signal(signal.SIGTERM)
    assert flow.process.wait(timeout=15) == 0
    assert "s3cret" not in flow.logs()


def test_a_store_that_answers_at_start_is_said_to(flow: FlowUnderTest) -> None:
    flow.start()
    host_port = flow.mongo_url.rpartition("/")[2].rpartition("@")[2]
    wait_for(
        lambda: f"MongoDB mongodb {host_port}/{flow.db_name} answers" in flow.logs(),
        30,
        flow,
        "the store's answer",
    )
