"""Creates an Azurite container, signed with Shared Key (object_store has no call for it).
Usage: python3 bench/azurite_container.py <endpoint> <container> <account key>"""
import base64, hashlib, hmac, sys, urllib.request, urllib.parse
from email.utils import formatdate
endpoint, container, key = sys.argv[1:]
url = f"{endpoint}/{container}?restype=container"
date = formatdate(usegmt=True)
path = urllib.parse.urlparse(url).path
ct = "application/octet-stream"
to_sign = f"PUT\n\n\n\n\n{ct}\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:2021-08-06\n/devstoreaccount1{path}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(url, method="PUT", data=b"", headers={"x-ms-date": date, "x-ms-version": "2021-08-06",
    "Content-Type": ct, "Authorization": f"SharedKey devstoreaccount1:{sig}"})
urllib.request.urlopen(req)
