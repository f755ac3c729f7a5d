"""Drives Forwarder's POST /query with a ksqlDB REST client from PyPI (ksql-python-ng), unmodified.

    client.py URL USER PASSWORD KSQL [OFFSET_RESET]  -> prints the body it streamed, joined
"""
import sys

from ksql import KSQLAPI

url, user, password, ksql = sys.argv[1:5]
properties = {"ksql.streams.auto.offset.reset": sys.argv[5]} if len(sys.argv) > 5 else None
# check_version would ask for ksqlDB's /info, which Forwarder does not serve.
client = KSQLAPI(url, api_key=user, secret=password, check_version=False)
print("".join(client.query(ksql, stream_properties=properties)))
