"""Connectors to the MQTT broker: the Bytewax source and the simulator's publisher."""
