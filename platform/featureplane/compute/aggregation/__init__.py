"""Time-window aggregations: partial aggregates (tiles) at materialization, roll-ups at retrieval.

An aggregate feature view stores, per entity and per ``aggregation_interval``, one *tile* holding the
partial aggregates of its events (count, sum, the sum of squared deviations, min, max, first and last
values, the last n values with their times, the distinct values). A tile is computed once, when its
partition is materialized; a rerun of a partition replaces exactly that partition's tiles.

A feature value at time ``t`` rolls up the tiles of ``[T - window, T)`` where ``T`` is ``t`` aligned
down to the interval, counting only tiles whose partition had ended by ``t`` (docs/aggregations.md).
Offline, every roll-up is one query over the tile table and a relation of *points* (join keys and the
interval index ``T / interval``): training sets use the spine's points, ``get_features_in_range`` the
times at which a value can change. Points are merged into each entity's stream of tiles and every
window is a SQL window frame over it. Online, each entity's row holds its recent tiles and lookups roll
them up at request time (``online``).

Each materialized partition also writes one *marker* row (null join keys, the partition's start as its
timestamp). Markers say which partitions are materialized: the online rows are written as of the end of
the latest one.

All SQL is generated in this package (``tiles``, ``rollup``), through ``dialects.Dialect``, so another warehouse needs only its own spellings.
"""
