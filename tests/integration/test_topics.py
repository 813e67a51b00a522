from kafka import KafkaConsumer

from pipeline.stack.topics import ensure_topics


def test_every_topic_is_created_with_its_partitions_once(settings):
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap)
    try:
        for name in settings.topics.all():
            assert consumer.partitions_for_topic(name) == set(range(settings.topic_partitions)), name
    finally:
        consumer.close()
    assert ensure_topics(settings) == []  # idempotent: nothing left to create
