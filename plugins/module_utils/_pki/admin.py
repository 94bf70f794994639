# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: the cluster administrator's kubeconfig, kept while it is still right."""

from __future__ import annotations

import base64
import binascii
import datetime
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._pki.material import (
    Authority,
    LeafSpec,
    PkiError,
    describe,
    issue,
    load_cert,
    not_after,
    reissue_reason,
)
from ansible_collections.kubeha.gce.plugins.module_utils._pki.replica import kubeconfig

try:
    from cryptography.hazmat.primitives import hashes
except ImportError:  # pragma: no cover - material reports the missing library
    hashes = None  # type: ignore[assignment]

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core on the controller
    yaml = None  # type: ignore[assignment]

#: The administrator identities, as kubeadm makes them: the user and the group a ClusterRoleBinding gives
#: cluster-admin (the lifecycle roles make it), and the break-glass one in system:masters, which no RBAC binding
#: can take away.
ADMIN = ("kubernetes-admin", "kubeha:cluster-admins")
SUPER_ADMIN = ("kubernetes-super-admin", "system:masters")
#: A certificate that ends this close to its CA's end ends with it (issue() caps at the CA's expiry).
_SLACK = datetime.timedelta(minutes=10)


class KubeconfigState(t.NamedTuple):
    """What a kubeconfig file that kubeha.gce wrote holds."""

    server: str
    ca_cert: str
    cert: str
    key: str


def spec_for(super_admin: bool) -> LeafSpec:
    user, group = SUPER_ADMIN if super_admin else ADMIN
    return LeafSpec("admin", "cluster", user, (group,), (), (), ("client",))


def names(cluster: str, super_admin: bool) -> tuple[str, str]:
    """The kubeconfig's (cluster entry, user and context entry) names."""
    user = (SUPER_ADMIN if super_admin else ADMIN)[0]
    return cluster, "%s@%s" % (user, cluster)


def _decoded(entry: t.Mapping[str, t.Any], field: str) -> str:
    """The PEM text of a *-data field; empty when it is not base64 of text (then issued or set again)."""
    try:
        return base64.b64decode(str(entry.get(field) or ""), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def read(text: str, path: str, cluster: str, super_admin: bool) -> KubeconfigState | None:
    """The state of an existing kubeconfig at ``path`` (None when it is empty); PkiError when it holds anything
    writing it would lose."""
    if not text.strip():
        return None
    if yaml is None:
        raise PkiError("PyYAML is needed to read %s" % path)
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PkiError("%s is not a kubeconfig (YAML): %s" % (path, exc)) from None
    if not isinstance(config, dict) or config.get("kind") != "Config":
        raise PkiError("%s is not a kubeconfig (no kind: Config); give a path of its own" % path)
    cluster_name, user_name = names(cluster, super_admin)
    entries = {
        "clusters": [c.get("name") for c in config.get("clusters") or [] if isinstance(c, dict)],
        "users": [u.get("name") for u in config.get("users") or [] if isinstance(u, dict)],
        "contexts": [c.get("name") for c in config.get("contexts") or [] if isinstance(c, dict)],
    }
    wanted = {"clusters": [cluster_name], "users": [user_name], "contexts": [user_name]}
    foreign = ["%s %s" % (kind[:-1], name) for kind, listed in entries.items() for name in listed
               if name not in wanted[kind]]
    if foreign:
        raise PkiError("%s holds other entries than this cluster's administrator (%s), which writing it would lose; "
                       "give a path of its own, and merge it with KUBECONFIG=%s:... when you use it"
                       % (path, ", ".join(foreign), path))
    by_name = {kind: {e.get("name"): e for e in config.get(kind) or [] if isinstance(e, dict)} for kind in entries}
    cluster_entry = (by_name["clusters"].get(cluster_name) or {}).get("cluster") or {}
    user_entry = (by_name["users"].get(user_name) or {}).get("user") or {}
    return KubeconfigState(
        server=str(cluster_entry.get("server") or ""),
        ca_cert=_decoded(cluster_entry, "certificate-authority-data"),
        cert=_decoded(user_entry, "client-certificate-data"),
        key=_decoded(user_entry, "client-key-data"),
    )


def fingerprint(pem: str) -> str | None:
    """sha256 of a certificate (as openssl x509 -fingerprint -sha256 prints it), or None."""
    try:
        return load_cert(pem, "the certificate").fingerprint(hashes.SHA256()).hex(":").upper() if pem else None
    except PkiError:
        return None


def describe_state(state: KubeconfigState | None, mode: int | None = None) -> dict[str, t.Any] | None:
    """What a diff shows of a kubeconfig: never the key."""
    if state is None:
        return None
    try:
        cert = describe(load_cert(state.cert, "the client certificate")) if state.cert else None
    except PkiError:
        cert = None
    return {"server": state.server, "ca_sha256": fingerprint(state.ca_cert), "subject": cert and cert["subject"],
            "not_after": cert and cert["not_after"], "serial": cert and cert["serial"],
            "mode": "%04o" % mode if mode is not None else "0600"}


def converge(current: KubeconfigState | None, authority: Authority, server: str, super_admin: bool,
             key_type: str, days: int, renew_before_days: int, rsa_size: int,
             check_mode: bool) -> tuple[KubeconfigState | None, str | None, str | None]:
    """(wanted state, why the certificate is issued again or None, why the file changes or None).

    The certificate is kept while it is right (subject, issuer, key, not within ``renew_before_days`` of its
    expiry); the server and the CA are set when they differ. In check mode a new certificate is not made
    (the state is None when it would be).
    """
    spec = spec_for(super_admin)
    held = {"cert": current.cert, "key": current.key} if current else None
    reason = reissue_reason(spec, held, authority, datetime.timedelta(days=renew_before_days))
    if reason and reason.startswith("expires on") and current is not None and \
            not_after(load_cert(current.cert, "the client certificate")) >= not_after(authority.cert) - _SLACK:
        # It ends with the CA: a new one would end there too, so issuing it on every run would change nothing.
        reason = None
    if reason is None and current is not None:
        wanted = KubeconfigState(server, authority.cert_pem, current.cert, current.key)
        if current.server != server:
            return wanted, None, "the server is %s, wanted %s" % (current.server or "not set", server)
        if current.ca_cert.strip() != authority.cert_pem.strip():
            return wanted, None, "the CA certificate is not the cluster's"
        return wanted, None, None
    if current is None:
        reason = "missing"
    why = "client certificate: %s" % reason if current else "missing"
    if check_mode:
        return None, reason, why
    cert, key = issue(spec, authority, key_type, days, rsa_size)
    return KubeconfigState(server, authority.cert_pem, cert, key), reason, why


def render(state: KubeconfigState, cluster: str, super_admin: bool) -> str:
    cluster_name, user_name = names(cluster, super_admin)
    return kubeconfig(user_name, state.server, state.ca_cert, state.cert, state.key, cluster=cluster_name)
