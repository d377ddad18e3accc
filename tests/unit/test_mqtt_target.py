import pytest

from connectors.mqtt_source import MqttTarget


def test_mqtt_urls_with_credentials_and_tls_are_understood():
    target = MqttTarget.from_url("mqtts://ward%403:s%3Acret@broker.example:8884")
    assert (target.host, target.port, target.tls) == ("broker.example", 8884, True)
    assert (target.username, target.password) == ("ward@3", "s:cret")
    assert MqttTarget.from_url("mqtts://broker.example").port == 8883
    assert MqttTarget.from_url("mqtt://127.0.0.1").port == 1883
    with pytest.raises(ValueError, match="mqtt://host:port"):
        MqttTarget.from_url("http://broker.example")
