# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A Compute API client for scripts that run inside the lab (``tests/lab/lab exec -- python ...``).

It reads what ``lab env`` exports (the deployer key, the project and the
simulator's endpoint) and waits for operations in their own scope, as a client
of GCE would.
"""

from __future__ import annotations

import os
import typing as t

import google.oauth2.service_account
import google_auth_httplib2
import httplib2
from googleapiclient import discovery


def client() -> t.Any:
    credentials = google.oauth2.service_account.Credentials.from_service_account_file(
        os.environ["GCP_SERVICE_ACCOUNT_FILE"], scopes=["https://www.googleapis.com/auth/compute"])
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=60))
    return discovery.build("compute", "v1", http=http, static_discovery=True, cache_discovery=False,
                           client_options={"api_endpoint": os.environ["KUBEHA_GCE_API_ENDPOINT"]})


def done(compute: t.Any, op: dict[str, t.Any]) -> dict[str, t.Any]:
    """Wait until ``op`` is DONE; exit with its error if it failed."""
    project = os.environ["GCP_PROJECT"]
    while op["status"] != "DONE":
        if "zone" in op:
            op = compute.zoneOperations().wait(project=project, zone=op["zone"].rsplit("/", 1)[-1],
                                               operation=op["name"]).execute()
        elif "region" in op:
            op = compute.regionOperations().wait(project=project, region=op["region"].rsplit("/", 1)[-1],
                                                 operation=op["name"]).execute()
        else:
            op = compute.globalOperations().wait(project=project, operation=op["name"]).execute()
    if "error" in op:
        raise SystemExit("operation failed: %s" % op["error"])
    return op
