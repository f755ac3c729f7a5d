"""Drives Forwarder with Devo's own SDK (devo-sdk), unmodified, over HTTPS.

    client.py submit ADDRESS KEY SECRET CA_FILE FROM_MS TO_MS DESTINATION_JSON  -> prints the job id
    client.py job|stop|start|remove|jobs ADDRESS KEY SECRET CA_FILE [JOB_ID]   -> prints the JSON answer
"""
import json
import sys

from devo.api import Client, ClientConfig

command, address, key, secret, ca = sys.argv[1:6]
if command == "submit":
    from_ms, to_ms, destination = int(sys.argv[6]), int(sys.argv[7]), json.loads(sys.argv[8])
    config = ClientConfig(response="json", stream=False, destination=destination)
    api = Client(auth={"key": key, "secret": secret}, address=address, config=config, verify=ca)
    answer = api.query(query="SELECT * FROM demo.ecommerce.data", dates={"from": from_ms, "to": to_ms})
    answer = json.loads(answer) if isinstance(answer, str) else answer
    print(answer["object"]["id"])
else:
    api = Client(auth={"key": key, "secret": secret}, address=address, config=ClientConfig(stream=False), verify=ca)
    calls = {"job": api.get_job, "stop": api.stop_job, "start": api.start_job, "remove": api.remove_job}
    answer = api.get_jobs() if command == "jobs" else calls[command](sys.argv[6])
    print(json.dumps(answer))
