"""Records any Kafka client may write are read: a Java producer (the broker's own kafka-clients
jar, compiled here with javac) writes news events with each compression codec Kafka has, and a
worker scores every one of them."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers import Worker, provision, read_until

from config.settings import Settings, load_settings
from signalyard.local.local_kafka import broker_paths

pytestmark = pytest.mark.kafka

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 5

PRODUCER = """
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;

public class CodecProducer {
    // args: bootstrap servers, topic, compression codec, records, event id prefix
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("compression.type", args[2]);
        props.put("linger.ms", "50");
        props.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        props.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int n = 0; n < Integer.parseInt(args[3]); n++) {
                String id = args[4] + "-" + n;
                String value = "{\\"id\\": \\"" + id + "\\", \\"ts\\": \\""
                    + java.time.Instant.now() + "\\", \\"source\\": \\"java\\", "
                    + "\\"ticker\\": \\"NOK\\", \\"headline\\": \\"Nokia raises its outlook "
                    + n + "\\"}";
                producer.send(new ProducerRecord<>(args[1], "NOK", value));
            }
        }
    }
}
"""


@pytest.fixture(scope="module")
def java_producer(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs the compiled producer, on the broker's own jars."""
    if shutil.which("javac") is None:
        pytest.fail("javac is needed to build the Java producer (a JDK 17)")
    libs = broker_paths(load_settings().home_dir, load_settings().stack).libs
    folder = tmp_path_factory.mktemp("java")
    (folder / "CodecProducer.java").write_text(PRODUCER)
    classpath = f"{folder}:{libs}/*"
    subprocess.run(
        ["javac", "-cp", classpath, "-d", str(folder), str(folder / "CodecProducer.java")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return ["java", "-cp", classpath, "CodecProducer"]


def test_a_worker_scores_records_of_every_compression_codec(
    kafka: Settings, registry_dir: Path, tmp_path: Path, java_producer: list[str]
) -> None:
    provision(kafka)
    topic, server = kafka.topics.raw("news").name, kafka.kafka.bootstrap_list[0]
    for codec in CODECS:
        done = subprocess.run(
            [*java_producer, server, topic, codec, str(PER_CODEC), codec],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    expected = {f"{codec}-{n}" for codec in CODECS for n in range(PER_CODEC)}

    worker = Worker(kafka, registry_dir, f"t-{uuid.uuid4().hex[:8]}", tmp_path / "w.log")
    try:
        worker.start("news")
        scored = asyncio.run(read_until(kafka, lambda s: set(s.ids["news"]) >= expected))
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.cleanup()
    assert set(scored.ids["news"]) == expected, worker.tail()
    assert not scored.dead, scored.dead[:3]
