"""The lookup service: Tecton's HTTP API v1 over the online store.

Everything under this package imports only the standard library, orjson, boto3 (DynamoDB) and the
featureplane modules that do the same, so the AWS Lambda handler starts fast.
"""
