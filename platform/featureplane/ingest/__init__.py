"""Ingest: records pushed to a PushSource or a FeatureTable, written to the online store and durably
to the offline store.

``records`` checks records against schemas, ``service`` runs one ingest request (validate, append to
the log, update the online store), ``log`` is the durable append-only log the offline store folds in,
and ``offline`` folds it into the offline tables. All but ``offline`` use the standard library only,
because they run inside the lookup service.
"""
