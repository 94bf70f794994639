# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Options shared by every module that talks to the Compute Engine API.
    DOCUMENTATION = r"""
options:
  auth_kind:
    description:
      - How to authenticate to Google Cloud.
      - V(serviceaccount) uses a service account JSON key from O(service_account_file) or
        O(service_account_contents); V(application) uses the application default credentials;
        V(machineaccount) uses the service account of the Compute Engine instance the module
        runs on; V(accesstoken) uses O(access_token) as it is.
      - When not set, the E(GCP_AUTH_KIND) environment variable is used. Without it the kind is
        inferred from what is available, in this order; a key (option, E(GCP_SERVICE_ACCOUNT_FILE),
        E(GCP_SERVICE_ACCOUNT_CONTENTS) or E(GCE_CREDENTIALS_FILE_PATH), as set by the AWX
        Google Compute Engine credential) means V(serviceaccount); a token means V(accesstoken);
        otherwise V(application).
    type: str
    choices: [application, machineaccount, serviceaccount, accesstoken]
  project:
    description:
      - The Google Cloud project that holds the cluster.
      - Defaults to E(GCP_PROJECT), then E(GCE_PROJECT), then the C(project_id) of the service
        account key. The module fails when none of these is set.
    type: str
  service_account_file:
    description:
      - Path to a service account JSON key, for O(auth_kind=serviceaccount).
      - Defaults to E(GCP_SERVICE_ACCOUNT_FILE), then E(GCE_CREDENTIALS_FILE_PATH).
      - Mutually exclusive with O(service_account_contents) and O(access_token).
    type: path
  service_account_contents:
    description:
      - The service account JSON key itself (a string or a dictionary), for O(auth_kind=serviceaccount).
      - Defaults to E(GCP_SERVICE_ACCOUNT_CONTENTS).
      - Mutually exclusive with O(service_account_file) and O(access_token).
    type: jsonarg
  service_account_email:
    description:
      - The service account of the instance to use with O(auth_kind=machineaccount).
      - Defaults to E(GCP_SERVICE_ACCOUNT_EMAIL), then V(default).
    type: str
  access_token:
    description:
      - An OAuth2 access token, for O(auth_kind=accesstoken).
      - Defaults to E(GCP_ACCESS_TOKEN).
    type: str
  scopes:
    description:
      - OAuth2 scopes to request.
      - Defaults to the comma-separated E(GCP_SCOPES), then C(https://www.googleapis.com/auth/compute).
    type: list
    elements: str
  api_endpoint:
    description:
      - The Compute API endpoint, including the service path, for example
        C(http://127.0.0.1:8089/compute/v1/) for a local simulator.
      - Defaults to E(KUBEHA_GCE_API_ENDPOINT), then Google's public endpoint.
    type: str
  request_timeout:
    description:
      - Seconds to wait for one HTTP answer from the API.
    type: int
    default: 60
  retry_deadline:
    description:
      - Seconds during which one API call is retried, with jittered exponential backoff, when GCE
        answers 429, 5xx or a rate-limit 403, or the connection fails. Other errors fail at once.
    type: int
    default: 120
requirements:
  - python >= 3.8
  - google-api-python-client >= 2.100.0
  - google-auth >= 2.20.0
  - google-auth-httplib2
notes:
  - Options given in the task always win over environment variables, so an AWX credential
    never overrides what a playbook says.
"""
