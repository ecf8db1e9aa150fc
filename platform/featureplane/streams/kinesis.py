"""A Kinesis stream as a stream source: each shard's records through boto3, from its checkpoint.

A record's identity is its shard id and sequence number. A shard with a checkpoint resumes
``AFTER_SEQUENCE_NUMBER`` it; one without starts at the source's ``initial_position`` (``TRIM_HORIZON``
or ``LATEST``), except a child of a shard this processor has read, which starts at its beginning so
that nothing put after a reshard is skipped. Shard iterators are kept between reads, so records put
between two polls are not skipped. A record's data must be a JSON object of the source's fields;
anything else reaches the processor as an invalid record (reported, not applied).

Kinesis allows five GetRecords calls per second per shard, shared by its consumers: each shard is
read at most once per ``MIN_GET_INTERVAL``, a throttled shard waits ``THROTTLED_WAIT`` before its
next call, and the shards are read in turns, so a busy shard cannot starve the others. After a
reshard, a child shard is read only once its parents are read to their end (per key, the records
stay in order), and a parent read to its end is reported ``finished``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from featureplane.definitions.specs import SourceSpec
from featureplane.streams.processor import StreamRecord

log = logging.getLogger(__name__)

MAX_GET = 10_000  # Kinesis's limit of records per GetRecords call
MIN_GET_INTERVAL = 0.2  # seconds between GetRecords calls on one shard (5 per second)
THROTTLED_WAIT = 1.0  # seconds a shard waits after a ProvisionedThroughputExceededException
LIST_EVERY = 30.0  # seconds between ListShards calls while no shard ends


@dataclass(frozen=True)
class Shard:
    name: str
    parents: tuple[str, ...]
    closed: bool  # resharded: its last record is known, the read that passes it ends the shard


class KinesisSource:
    def __init__(
        self,
        source: SourceSpec,
        client: Any | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
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
        self.clock = clock
        self.finished: set[str] = set()  # shards read to their end by this source
        self._iterators: dict[str, str] = {}
        self._due: dict[str, float] = {}  # shard -> earliest time of its next GetRecords
        self._shards: list[Shard] = []
        self._listed_at: float | None = None
        self._turn = 0
        self._behind: dict[str, bool] = {}  # shard -> whether its last read left records waiting

    def shards(self) -> list[str]:
        return [shard.name for shard in self._list(force=True)]

    def _list(self, force: bool = False) -> list[Shard]:
        now = self.clock()
        if force or self._listed_at is None or now - self._listed_at >= LIST_EVERY:
            shards, token = [], None
            while True:
                kwargs: dict[str, Any] = {"NextToken": token} if token else {"StreamName": self.stream_name}
                response = self.client.list_shards(**kwargs)
                for item in response["Shards"]:
                    parents = (item.get("ParentShardId"), item.get("AdjacentParentShardId"))
                    closed = "EndingSequenceNumber" in item.get("SequenceNumberRange", {})
                    shards.append(Shard(item["ShardId"], tuple(p for p in parents if p), closed))
                token = response.get("NextToken")
                if not token:
                    break
            self._shards, self._listed_at = shards, now
        return self._shards

    def _iterator(self, shard: Shard, positions: Mapping[str, int]) -> str:
        if shard.name not in self._iterators:
            kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard.name}
            done = positions.get(shard.name)
            if done is not None:
                kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=str(done))
            elif any(p in positions or p in self.finished for p in shard.parents):
                kwargs.update(ShardIteratorType="TRIM_HORIZON")
            else:
                kwargs.update(ShardIteratorType=self.initial_position)
            self._iterators[shard.name] = self.client.get_shard_iterator(**kwargs)["ShardIterator"]
        return self._iterators[shard.name]

    def _readable(self, shards: list[Shard], rotate: bool = True) -> list[Shard]:
        """The unfinished shards whose parents still listed are finished, in this read's turn order."""
        listed = {shard.name for shard in shards}
        ready = [
            s
            for s in shards
            if s.name not in self.finished and all(p in self.finished or p not in listed for p in s.parents)
        ]
        if not ready or not rotate:
            return ready
        self._turn = (self._turn + 1) % len(ready)
        return ready[self._turn :] + ready[: self._turn]

    @property
    def caught_up(self) -> bool:
        """Whether every shard that can be read was read and its last read left nothing waiting (a
        closed shard is not caught up until a read ends it: then its children are to be read)."""
        ready = self._readable(self._list(), rotate=False)
        return all(self._behind.get(s.name, True) is False and not s.closed for s in ready)

    def read(self, positions: Mapping[str, int], limit: int) -> list[StreamRecord]:
        """Up to ``limit`` records of the shards due for a read, each after its checkpoint (fewer, or
        none, when caught up or when no shard is due yet)."""
        from botocore.exceptions import ClientError

        out: list[StreamRecord] = []
        ended = False
        for shard in self._readable(self._list()):
            now = self.clock()
            if self._due.get(shard.name, 0.0) > now:
                continue
            self._due[shard.name] = now + MIN_GET_INTERVAL
            asked = min(MAX_GET, max(1, limit - len(out)))
            self._behind.pop(shard.name, None)
            try:
                response = self.client.get_records(
                    ShardIterator=self._iterator(shard, positions), Limit=asked
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code == "ProvisionedThroughputExceededException":
                    log.warning(
                        "kinesis shard %s of %s is throttled; retrying it in %.0f s",
                        shard.name,
                        self.stream_name,
                        THROTTLED_WAIT,
                    )
                    self._due[shard.name] = now + THROTTLED_WAIT
                    continue
                if code == "ExpiredIteratorException":
                    self._iterators.pop(shard.name, None)  # the next read asks for a new one
                    self._due[shard.name] = now
                    continue
                raise
            self._behind[shard.name] = (
                len(response["Records"]) >= asked or response.get("MillisBehindLatest", 0) > 0
            )
            for item in response["Records"]:
                out.append(StreamRecord(shard.name, int(item["SequenceNumber"]), decode_data(item["Data"])))
            following = response.get("NextShardIterator")
            if following is None:  # a closed shard read to its end: its children may start
                self.finished.add(shard.name)
                self._iterators.pop(shard.name, None)
                ended = True
            else:
                self._iterators[shard.name] = following
            if len(out) >= limit:
                break
        if ended:
            self._listed_at = None  # list again: the children of the shards that ended
        return out


def decode_data(data: bytes) -> Any:
    """A record's data: its JSON value, or (not JSON) its first bytes, which the processor reports."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data[:80]
