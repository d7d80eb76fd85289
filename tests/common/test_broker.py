"""The broker transport keeps one Redis client per channel and still moves messages."""

from __future__ import annotations

from kombu import Exchange, Queue

from common.broker import Channel
from common.queues import celery_client


def test_the_channel_reuses_one_client_and_delivers(redis_prefix):
    queue = Queue("broker-test", Exchange("broker-test", type="direct"), routing_key="bt")
    with celery_client().connection_for_write() as connection:
        assert connection.as_uri().startswith("redis://")  # Flower picks its view by the scheme
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        producer = connection.Producer(channel)
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key="bt", declare=[queue])
        message = queue(channel).get(no_ack=True)
        assert message is not None and message.payload == {"n": 1}
        assert queue(channel).get(no_ack=True) is None
        queue(channel).delete()
