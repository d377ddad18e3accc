"""Benchmark: handing records to kafka-python one by one vs. a whole batch at a time.

Prints the CPU per record of the sending thread and of the whole process (the producer's
sender thread included), and the flush that follows, for `KafkaProducer.send` per record
(what `KafkaWriter.write` does) and for `sinks.kafka_batches.BatchAppender` (what the
dataflow's `send` + `sync` do), against the local Kafka. Asserts nothing.

    .venv/bin/python tests/bench/bench_kafka_send.py --records 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

from kafka import KafkaProducer

from sinks.kafka_batches import BatchAppender
from sinks.kafka_writer import ensure_topics

HEADERS = [("content-type", b"application/cloudevents+json")]


def one_by_one(producer: KafkaProducer, topic: str, records: list[tuple[str, bytes]]) -> None:
    for key, value in records:
        producer.send(topic, key=key.encode(), value=value, headers=HEADERS)


def measure(
    name: str,
    producer: KafkaProducer,
    hand_over: Callable[[], object],
    count: int,
    rounds: int,
) -> None:
    hand_over()  # warm up: metadata, connections
    producer.flush()
    thread_us, process_us, flush_ms = [], [], []
    for _ in range(rounds):
        wall0, cpu0 = time.thread_time(), time.process_time()
        hand_over()
        wall1 = time.thread_time()
        started = time.perf_counter()
        producer.flush()
        flush_ms.append(1000 * (time.perf_counter() - started))
        cpu1 = time.process_time()
        thread_us.append(1e6 * (wall1 - wall0) / count)
        process_us.append(1e6 * (cpu1 - cpu0) / count)
    print(
        f"{name:<34} hand-over {statistics.median(thread_us):5.1f} us/record (calling thread), "
        f"{statistics.median(process_us):5.1f} us/record (process, sender thread included); "
        f"flush {statistics.median(flush_ms):5.1f} ms (medians of {rounds})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kafka", default=os.environ.get("VITALFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--value-bytes", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    topic = f"vitalflow.bench.send-{uuid.uuid4().hex[:8]}"
    ensure_topics(args.kafka, {topic: 4})
    value = b"x" * args.value_bytes
    records = [(f"device-{n % args.keys}", value) for n in range(args.records)]
    print(
        f"{args.records} records of {args.value_bytes} bytes over {args.keys} keys to {topic} "
        "(4 partitions), acks=all, idempotent, as sinks/kafka_writer.py configures it"
    )
    producer = KafkaProducer(
        bootstrap_servers=args.kafka,
        acks="all",
        enable_idempotence=True,
        linger_ms=50,
        batch_size=256 * 1024,
    )
    try:
        measure(
            "KafkaProducer.send per record",
            producer,
            lambda: one_by_one(producer, topic, records),
            len(records),
            args.rounds,
        )
        appender = BatchAppender(producer, 5000)
        measure(
            "BatchAppender, whole batches",
            producer,
            lambda: appender.append(topic, records, HEADERS),
            len(records),
            args.rounds,
        )
    finally:
        producer.close()


if __name__ == "__main__":
    main()
