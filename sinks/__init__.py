"""Writers to the durable stores: MongoDB, Kafka and the embedded event log."""
