"""Baseline: the naive client of public Teleport scripts: one part after another, each part
read whole into memory and PUT with `requests`-style code (here httpx).

    python naive_upload.py API_BASE FILE
"""

import math
import os
import sys

import httpx

base, path = sys.argv[1], sys.argv[2]
size = os.path.getsize(path)
api = httpx.Client(base_url=base, timeout=300)
token = api.post(
    "/oauth2/token",
    json={"grant_type": "client_credentials", "client_id": "b", "client_secret": "b"},
).json()["access_token"]
api.headers["Authorization"] = f"Bearer {token}"
created = api.post(
    "/api/v1/captures", json={"name": "naive", "bytesize": size, "input_data_format": "video"}
).json()
eid, chunk = created["eid"], created["chunk_size"]
parts = []
with open(path, "rb") as handle:
    for number in range(1, math.ceil(size / chunk) + 1):
        url = api.post(
            f"/api/v1/captures/{eid}/create-upload-url/{number}",
            json={"eid": eid, "bytesize": size},
        ).json()["upload_url"]
        data = handle.read(chunk)  # the whole part in memory
        response = httpx.put(url, content=data, timeout=300)
        parts.append({"number": number, "etag": response.headers["ETag"]})
api.post(f"/api/v1/captures/{eid}/uploaded", json={"eid": eid, "parts": parts})
