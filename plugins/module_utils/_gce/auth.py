# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: credentials, project and the API session."""

from __future__ import annotations

import json
import os
import traceback
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import (
    GOOGLE_IMPORT_ERROR,
    ComputeApi,
    GceError,
    RetryPolicy,
)

AUTH_IMPORT_ERROR: str | None
try:
    import google.auth
    import google.auth.compute_engine
    import google.oauth2.credentials
    import google.oauth2.service_account
    import google_auth_httplib2
    import httplib2
except ImportError:
    AUTH_IMPORT_ERROR = traceback.format_exc()
else:
    AUTH_IMPORT_ERROR = None

AUTH_KINDS = ("application", "machineaccount", "serviceaccount", "accesstoken")
DEFAULT_SCOPES = ["https://www.googleapis.com/auth/compute"]

#: The options every GCE module takes; documented once in the ``gce`` doc fragment.
#: Environment variables are read by :func:`resolve_auth`, not by fallbacks, so an
#: option given in the task always wins and mutual exclusion applies to options only.
AUTH_ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "auth_kind": {"type": "str", "choices": list(AUTH_KINDS)},
    "project": {"type": "str"},
    "service_account_file": {"type": "path"},
    "service_account_contents": {"type": "jsonarg", "no_log": True},
    "service_account_email": {"type": "str"},
    "access_token": {"type": "str", "no_log": True},
    "scopes": {"type": "list", "elements": "str"},
    "api_endpoint": {"type": "str"},
    "request_timeout": {"type": "int", "default": 60},
    "retry_deadline": {"type": "int", "default": 120},
}

AUTH_MUTUALLY_EXCLUSIVE = [
    ["service_account_file", "service_account_contents"],
    ["service_account_file", "access_token"],
    ["service_account_contents", "access_token"],
]


def credentials_error(message: str) -> GceError:
    """Credentials, or the project, that cannot be used as given."""
    return GceError(message, reason="badCredentials")


class Auth(t.NamedTuple):
    kind: str
    project: str
    scopes: list[str]
    api_endpoint: str | None
    service_account_info: dict[str, t.Any] | None
    service_account_email: str | None
    access_token: str | None


def _env(environ: t.Mapping[str, str], *names: str) -> tuple[str | None, str | None]:
    """The first non-empty variable of ``names``: (value, name)."""
    for name in names:
        value = environ.get(name)
        if value:
            return value, name
    return None, None


def _load_key(text: str, origin: str) -> dict[str, t.Any]:
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise credentials_error("the service account key from %s is not valid JSON: %s" % (origin, exc)) from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise credentials_error("the service account key from %s is not a service account JSON key "
                                "(it has no \"type\": \"service_account\")" % origin)
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if missing:
        raise credentials_error("the service account key from %s lacks %s" % (origin, ", ".join(missing)))
    return info


def _read_key_file(path: str, origin: str) -> dict[str, t.Any]:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            return _load_key(handle.read(), "%s (%s)" % (origin, path))
    except OSError as exc:
        raise credentials_error("cannot read the service account key %s (%s): %s" % (path, origin, exc.strerror)) from None


def resolve_auth(params: t.Mapping[str, t.Any], environ: t.Mapping[str, str] | None = None) -> Auth:
    """Decide how to authenticate from the options, then the environment.

    Order: options; ``GCP_*`` variables (google.cloud and AWX); ``GCE_CREDENTIALS_FILE_PATH``
    and ``GCE_PROJECT`` (older AWX credential). Raises GceError naming what is wrong.
    """
    environ = os.environ if environ is None else environ
    kind = params.get("auth_kind")
    if not kind:
        kind = _env(environ, "GCP_AUTH_KIND")[0]
        if kind and kind not in AUTH_KINDS:
            raise credentials_error("GCP_AUTH_KIND=%s is not a known auth_kind; use one of %s"
                                    % (kind, ", ".join(AUTH_KINDS)))
    explicit_key = params.get("service_account_file") or params.get("service_account_contents")
    if not kind:
        # Infer, as the AWX GCE credential only sets a key file and a project.
        if explicit_key or _env(environ, "GCP_SERVICE_ACCOUNT_FILE", "GCP_SERVICE_ACCOUNT_CONTENTS",
                                "GCE_CREDENTIALS_FILE_PATH")[0]:
            kind = "serviceaccount"
        elif params.get("access_token") or _env(environ, "GCP_ACCESS_TOKEN")[0]:
            kind = "accesstoken"
        else:
            kind = "application"

    if explicit_key and kind != "serviceaccount":
        raise credentials_error("service_account_file and service_account_contents need auth_kind=serviceaccount, "
                                "not %s" % kind)
    if params.get("access_token") and kind != "accesstoken":
        raise credentials_error("access_token needs auth_kind=accesstoken, not %s" % kind)

    info = None
    token = None
    email = None
    if kind == "serviceaccount":
        if params.get("service_account_contents"):
            info = _load_key(params["service_account_contents"], "service_account_contents")
        elif params.get("service_account_file"):
            info = _read_key_file(params["service_account_file"], "service_account_file")
        else:
            contents = _env(environ, "GCP_SERVICE_ACCOUNT_CONTENTS")[0]
            path, name = _env(environ, "GCP_SERVICE_ACCOUNT_FILE", "GCE_CREDENTIALS_FILE_PATH")
            if contents and path:
                raise credentials_error("both GCP_SERVICE_ACCOUNT_CONTENTS and %s are set; set only one" % name)
            if contents:
                info = _load_key(contents, "GCP_SERVICE_ACCOUNT_CONTENTS")
            elif path:
                info = _read_key_file(path, str(name))
            else:
                raise credentials_error("auth_kind=serviceaccount needs service_account_file or service_account_contents "
                                        "(or GCP_SERVICE_ACCOUNT_FILE, GCP_SERVICE_ACCOUNT_CONTENTS, GCE_CREDENTIALS_FILE_PATH)")
    elif kind == "accesstoken":
        token = params.get("access_token") or _env(environ, "GCP_ACCESS_TOKEN")[0]
        if not token:
            raise credentials_error("auth_kind=accesstoken needs access_token (or GCP_ACCESS_TOKEN)")
    elif kind == "machineaccount":
        email = params.get("service_account_email") or _env(environ, "GCP_SERVICE_ACCOUNT_EMAIL")[0] or "default"

    scopes = params.get("scopes")
    if not scopes:
        env_scopes = _env(environ, "GCP_SCOPES")[0]
        scopes = [s.strip() for s in env_scopes.split(",") if s.strip()] if env_scopes else list(DEFAULT_SCOPES)

    project = params.get("project") or _env(environ, "GCP_PROJECT", "GCE_PROJECT")[0]
    if not project and info:
        project = info.get("project_id")
    if not project:
        raise credentials_error("no project: set the project option (or GCP_PROJECT / GCE_PROJECT)")

    endpoint = params.get("api_endpoint") or _env(environ, "KUBEHA_GCE_API_ENDPOINT")[0]
    return Auth(kind, project, list(scopes), endpoint, info, email, token)


def credentials_for(auth: Auth) -> t.Any:
    """google-auth credentials for a resolved :class:`Auth`."""
    if auth.kind == "serviceaccount":
        try:
            credentials = google.oauth2.service_account.Credentials.from_service_account_info(
                auth.service_account_info, scopes=auth.scopes)
        except (ValueError, KeyError) as exc:
            raise credentials_error("the service account key cannot be used: %s" % exc) from None
        # The key signs its own bearer token (a self-signed JWT with the scopes as a claim, as Google's client
        # libraries send): no round trip to the token endpoint in each module run.
        return credentials.with_always_use_jwt_access(True)
    if auth.kind == "accesstoken":
        return google.oauth2.credentials.Credentials(auth.access_token)
    if auth.kind == "machineaccount":
        return google.auth.compute_engine.Credentials(service_account_email=auth.service_account_email)
    try:
        credentials = google.auth.default(scopes=auth.scopes)[0]
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise credentials_error("auth_kind=application found no application default credentials: %s" % exc) from None
    return credentials


def authorized_http(auth: Auth, timeout: int) -> t.Any:
    """An httplib2 transport that adds (and refreshes) the bearer token."""
    return google_auth_httplib2.AuthorizedHttp(credentials_for(auth), http=httplib2.Http(timeout=timeout))


def missing_libraries() -> str | None:
    """The traceback of a failed import of the Google libraries, or ``None``."""
    return GOOGLE_IMPORT_ERROR or AUTH_IMPORT_ERROR


def connect(params: t.Mapping[str, t.Any], http: t.Any = None) -> ComputeApi:
    """A :class:`ComputeApi` for the module parameters (``http`` replaces the transport in tests)."""
    auth = resolve_auth(params)
    if http is None:
        http = authorized_http(auth, params.get("request_timeout") or 60)
    deadline = params.get("retry_deadline")
    retry = RetryPolicy(deadline=120 if deadline is None else deadline)  # 0: one attempt, no retries
    return ComputeApi(http, auth.project, api_endpoint=auth.api_endpoint, retry=retry)
