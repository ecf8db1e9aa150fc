"""A Kinesis stream as a stream source: each shard's records through boto3, from its checkpoint.

A record's identity is its shard id and sequence number. A shard with a checkpoint resumes
``AFTER_SEQUENCE_NUMBER`` it; one without starts at the source's ``initial_position`` (``TRIM_HORIZON``
or ``LATEST``). Shard iterators are kept between reads, so records put between two polls are not
skipped. A record's data must be a JSON object of the source's fields; anything else reaches the
processor as an invalid record (reported, not applied).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from featureplane.definitions.specs import SourceSpec
from featureplane.streams.processor import StreamRecord

MAX_GET = 10_000  # Kinesis's limit of records per GetRecords call


class KinesisSource:
    def __init__(self, source: SourceSpec, client: Any | None = None) -> None:
        config = source.stream
        self.source = source
        self.stream_name = config["stream_name"]
        self.initial_position = config.get("initial_position", "TRIM_HORIZON")
        if client is None:
            from featureplane.util.aws import client as aws_client

            client = aws_client(
                "kinesis", region_name=config["region"], endpoint_url=config.get("endpoint_url")
            )
        self.client = client
        self._iterators: dict[str, str | None] = {}

    def shards(self) -> list[str]:
        shards, token = [], None
        while True:
            kwargs: dict[str, Any] = {"NextToken": token} if token else {"StreamName": self.stream_name}
            response = self.client.list_shards(**kwargs)
            shards += [s["ShardId"] for s in response["Shards"]]
            token = response.get("NextToken")
            if not token:
                return shards

    def _iterator(self, shard: str, done: int | None) -> str | None:
        if shard not in self._iterators:
            kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard}
            if done is not None:
                kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=str(done))
            else:
                kwargs.update(ShardIteratorType=self.initial_position)
            self._iterators[shard] = self.client.get_shard_iterator(**kwargs)["ShardIterator"]
        return self._iterators[shard]

    def read(self, positions: Mapping[str, int], limit: int) -> list[StreamRecord]:
        """Up to ``limit`` records of every shard after its checkpoint (fewer when caught up)."""
        out: list[StreamRecord] = []
        for shard in self.shards():
            iterator = self._iterator(shard, positions.get(shard))
            if iterator is None:
                continue  # a closed shard read to its end
            response = self.client.get_records(
                ShardIterator=iterator, Limit=min(MAX_GET, max(1, limit - len(out)))
            )
            self._iterators[shard] = response.get("NextShardIterator")
            for item in response["Records"]:
                out.append(StreamRecord(shard, int(item["SequenceNumber"]), decode_data(item["Data"])))
            if len(out) >= limit:
                break
        return out


def decode_data(data: bytes) -> Any:
    """A record's data: its JSON value, or (not JSON) its first bytes, which the processor reports."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data[:80]
