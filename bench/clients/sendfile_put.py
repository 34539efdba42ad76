"""The sink's ceiling: parallel PUTs whose bodies go from the page cache to the socket with
sendfile (no copies in user space), stdlib only, with no API calls in between.

    python sendfile_put.py SINK_URL FILE STREAMS

No real client can beat this on the same sink; if it is faster than every client measured, the
sink is not what limits them.
"""

import http.client
import os
import sys
import threading
from urllib.parse import urlsplit

url, path, streams = urlsplit(sys.argv[1]), sys.argv[2], int(sys.argv[3])
size = os.path.getsize(path)
share = -(-size // streams)  # ceiling division: every byte goes out exactly once


def put(index: int) -> None:
    offset = index * share
    count = min(share, size - offset)
    connection = http.client.HTTPConnection(url.hostname, url.port)
    connection.putrequest("PUT", f"/bucket/ceiling-{index}")
    connection.putheader("Content-Length", str(count))
    connection.endheaders()
    with open(path, "rb") as handle:
        sent = connection.sock.sendfile(handle, offset, count)
    answer = connection.getresponse()
    answer.read()
    if sent != count or answer.status != 200:
        raise SystemExit(f"stream {index}: sent {sent} of {count}, status {answer.status}")


threads = [threading.Thread(target=put, args=(i,)) for i in range(streams)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
