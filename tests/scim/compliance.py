"""Runs python-scim's compliance checker (scim2-tester) against a SCIM server.

Usage: compliance.py BASE_URL TOKEN
Prints one JSON line per check (status, title, reason) and exits 1 when any check is an error.
Run by tests/it/intake.rs in a private virtualenv (see tests/scim/requirements.txt).
"""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

BAD = {Status.ERROR, Status.CRITICAL}


def main() -> int:
    base, token = sys.argv[1], sys.argv[2]
    http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    client = SyncSCIMClient(http)
    # The server publishes what it serves; the checker reads it from there.
    client.discover()
    results = check_server(client)
    for r in results:
        print(
            json.dumps(
                {
                    "status": r.status.name,
                    "title": r.title,
                    "resource_type": r.resource_type,
                    "reason": r.reason,
                }
            )
        )
    return 1 if any(r.status in BAD for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
