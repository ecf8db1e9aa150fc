"""The staged event log's format and configuration, without a server: keys that sort in sequence
order, objects that read back as written and refuse to be read as something else, and staging
locations that are checked where they are set."""

from __future__ import annotations

import pytest
from conftest import write_config

from featureplane.config import ConfigError, load_config
from featureplane.offline_stores.event_log import LoggedEvent
from featureplane.streams.aws_lambda import _staging
from featureplane.streams.staging import StagingArea, StagingError, decode_events, encode_events

BIG = 49_654_320_129_872_650_128_734_091_876_543_210_987  # a 128-bit Kinesis sequence number


def test_events_objects_read_back_as_written_with_sequences_beyond_64_bits():
    events = [
        LoggedEvent(("u1",), 1_700_000_000_000_000, {"amount": 5, "price": 2.5, "seen": None}, "shardId-1", BIG),
        LoggedEvent(("u2",), 1_700_000_000_000_001, {"amount": -1, "price": 0.1, "seen": 17}, "shardId-1", BIG + 1),
    ]  # fmt: skip
    data = encode_events("prod/clicks/g0", "shardId-1", events, 1_700_000_100_000_000)
    assert decode_events(data, "prod/clicks/g0", "shardId-1", "here") == (events, 1_700_000_100_000_000)


def test_an_object_of_another_table_or_torn_or_garbled_is_refused_naming_it():
    event = LoggedEvent(("u1",), 1, {"amount": 5}, "s", 7)
    data = encode_events("prod/clicks/g0", "s", [event, event], 0)
    with pytest.raises(
        StagingError, match=r"s3://b/k: holds events of 'prod/clicks/g0'.*not 'prod/clicks/g1'"
    ):
        decode_events(data, "prod/clicks/g1", "s", "s3://b/k")
    lines = data.decode().splitlines()
    with pytest.raises(StagingError, match="holds 1 events, its header says 2"):
        decode_events("\n".join(lines[:2]).encode(), "prod/clicks/g0", "s", "k")
    with pytest.raises(StagingError, match="line 3 is not a staged event"):
        decode_events("\n".join([*lines[:2], '{"sequence": "x"}']).encode(), "prod/clicks/g0", "s", "k")
    with pytest.raises(StagingError, match="line 1 is not a staged events header"):
        decode_events(b"[]\n", "prod/clicks/g0", "s", "k")


def test_keys_sort_in_sequence_order_and_parse_back():
    area = StagingArea("s3://bucket/stage/")
    assert area.prefix == "stage" and str(area) == "s3://bucket/stage"
    keys = [area.events_key("prod/v/g0", "shardId-0", first, first + 3) for first in (9, 10, 100, BIG)]
    assert keys == sorted(keys)
    assert keys[0] == f"stage/prod/v/g0/events/shardId-0/{12:040d}-{9:040d}.ndjson"
    parsed = area._parse_key(keys[-1], area.events_prefix("prod/v/g0"))
    assert (parsed.shard, parsed.first, parsed.last) == ("shardId-0", BIG, BIG + 3)
    odd = area.events_key("prod/v/g0", "a/b", 1, 2)  # a shard name with a slash stays one path segment
    assert area._parse_key(odd, area.events_prefix("prod/v/g0")).shard == "a/b"
    with pytest.raises(StagingError, match="is not a staged events object"):
        area._parse_key("stage/prod/v/g0/events/shardId-0/notes.txt", area.events_prefix("prod/v/g0"))
    assert StagingArea("s3://bucket").events_prefix("prod/v/g0") == "prod/v/g0/events/"


def test_a_staging_location_that_is_not_s3_is_refused_where_it_is_set(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    path = write_config(root, "streams: {staging: my-bucket/stage}\n")
    with pytest.raises(ConfigError, match=r"streams.staging must be an S3 location s3://bucket/prefix"):
        load_config(path)
    path = write_config(root, "streams: {staging: 's3:///stage'}\n")
    with pytest.raises(ConfigError, match=r"streams.staging: 's3:///stage' names no bucket"):
        load_config(path)
    path = write_config(root, "streams: {staging: 's3://bucket/stage/', staging_region: eu-west-1}\n")
    config = load_config(path)
    assert config.streams.staging == "s3://bucket/stage"
    area = _staging({}, config)
    assert area is not None and (area.bucket, area.prefix, area.region) == ("bucket", "stage", "eu-west-1")
    assert _staging({"FEATUREPLANE_STREAM_STAGING": "s3://other"}, config).bucket == "other"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="FEATUREPLANE_STREAM_STAGING must be an S3 location"):
        _staging({"FEATUREPLANE_STREAM_STAGING": "/tmp/stage"}, config)
    assert _staging({}, load_config(write_config(root))) is None
