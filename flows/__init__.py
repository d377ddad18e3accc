"""The vitalflow dataflow: MQTT deliveries through parse, patient lookup, enrich and store."""
