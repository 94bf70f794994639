# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: the cluster's CAs and the certificate set of one master replica."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._pki.material import (
    Authority,
    LeafSpec,
    PkiError,
    describe,
    issue,
    issued_on,
    key_pem,
    load_authority,
    load_cert,
    new_authority,
    new_key,
    public_pem,
    reissue_reason,
)

#: The cluster's certificate authorities: name -> common name.
AUTHORITIES = {"cluster": "kubernetes", "etcd": "etcd-ca", "front_proxy": "front-proxy-ca"}
#: Every leaf of a replica, in the order they are reported.
LEAVES = ("etcd-peer", "etcd-server", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client",
          "front-proxy-client", "controller-manager", "scheduler", "addon-manager", "cloud-controller-manager")
#: Leaves a kubeconfig is made for: leaf -> kubeconfig user.
KUBECONFIGS = {"controller-manager": "system:kube-controller-manager", "scheduler": "system:kube-scheduler",
               "cloud-controller-manager": "system:cloud-controller-manager"}


class ReplicaIdentity(t.NamedTuple):
    name: str
    internal_ip: str
    external_ip: str | None
    reserved_ip: str | None
    service_ip: str
    dns_domain: str
    extra_sans: tuple[str, ...]


def _ip(value: t.Any, what: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise PkiError("%s '%s' is not an IP address" % (what, value)) from None


def identity_from(params: t.Mapping[str, t.Any]) -> ReplicaIdentity:
    """The replica's names and addresses, checked: every IP field must hold an IP."""
    name = params.get("name") or ""
    if not name:
        raise PkiError("replica.name is required")
    extra = []
    for index, value in enumerate(params.get("extra_sans") or []):
        value = str(value)
        try:
            extra.append(str(ipaddress.ip_address(value)))
        except ValueError:
            if not all(part and len(part) < 64 for part in value.split(".")) or " " in value:
                raise PkiError("replica.extra_sans[%d] '%s' is neither an IP address nor a DNS name" % (index, value)) from None
            extra.append(value)
    return ReplicaIdentity(
        name=name,
        internal_ip=_ip(params.get("internal_ip"), "replica.internal_ip"),
        external_ip=_ip(params["external_ip"], "replica.external_ip") if params.get("external_ip") else None,
        reserved_ip=_ip(params["reserved_ip"], "replica.reserved_ip") if params.get("reserved_ip") else None,
        service_ip=_ip(params.get("service_ip") or "10.0.0.1", "replica.service_ip"),
        dns_domain=params.get("dns_domain") or "cluster.local",
        extra_sans=tuple(extra),
    )


def _split(values: t.Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dns, ips = [], []
    for value in values:
        try:
            ips.append(str(ipaddress.ip_address(value)))
        except ValueError:
            dns.append(value)
    return tuple(sorted(set(dns))), tuple(sorted(set(ips), key=ipaddress.ip_address))


def leaf_specs(replica: ReplicaIdentity) -> dict[str, LeafSpec]:
    """What each certificate of the replica must say (DESIGN: "PKI per replica")."""
    etcd_dns, etcd_ips = _split([replica.name, "localhost", replica.internal_ip, "127.0.0.1"])
    api_names = [replica.name, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.%s" % replica.dns_domain, replica.internal_ip, replica.service_ip, "127.0.0.1"]
    api_names += [ip for ip in (replica.reserved_ip, replica.external_ip) if ip]
    api_dns, api_ips = _split(list(api_names) + list(replica.extra_sans))
    specs = [
        LeafSpec("etcd-peer", "etcd", replica.name, (), etcd_dns, etcd_ips, ("client", "server")),
        LeafSpec("etcd-server", "etcd", replica.name, (), etcd_dns, etcd_ips, ("client", "server")),
        LeafSpec("apiserver", "cluster", "kube-apiserver", (), api_dns, api_ips, ("server",)),
        LeafSpec("apiserver-etcd-client", "etcd", "kube-apiserver-etcd-client", (), (), (), ("client",)),
        LeafSpec("apiserver-kubelet-client", "cluster", "kube-apiserver-kubelet-client", ("system:masters",), (), (),
                 ("client",)),
        LeafSpec("front-proxy-client", "front_proxy", "front-proxy-client", (), (), (), ("client",)),
        LeafSpec("controller-manager", "cluster", "system:kube-controller-manager", (), (), (), ("client",)),
        LeafSpec("scheduler", "cluster", "system:kube-scheduler", (), (), (), ("client",)),
        # The addon manager creates and deletes objects of any kind, and cannot grant that right to itself
        # through RBAC before it has it: the system:masters group holds it from the start.
        LeafSpec("addon-manager", "cluster", "system:kube-addon-manager", ("system:masters",), (), (), ("client",)),
        # The GCE cloud-controller-manager, as the user its RBAC addon binds (the control_plane role ships it).
        LeafSpec("cloud-controller-manager", "cluster", "system:cloud-controller-manager", (), (), (), ("client",)),
    ]
    return {s.name: s for s in specs}


def create_authorities(ca: t.Mapping[str, t.Any] | None, key_type: str, days: int,
                       rsa_size: int) -> tuple[dict[str, t.Any], list[str]]:
    """The CA material with every missing CA (and the service-account key pair) created: (material, created)."""
    material = {k: dict(v) for k, v in (ca or {}).items()}
    created = []
    for name, common_name in AUTHORITIES.items():
        if name in material:
            load_authority(name, material[name])
            continue
        authority = new_authority(name, common_name, key_type, days, rsa_size)
        material[name] = {"cert": authority.cert_pem, "key": authority.key_pem}
        created.append(name)
    if "service_account" not in material:
        # kube-apiserver signs service-account tokens with it: RSA, as every Kubernetes version accepts.
        key = new_key("rsa", max(rsa_size, 2048))
        material["service_account"] = {"key": key_pem(key), "public": public_pem(key)}
        created.append("service_account")
    elif not material["service_account"].get("key") or not material["service_account"].get("public"):
        raise PkiError("ca.service_account needs both 'key' and 'public'")
    return material, created


def load_authorities(ca: t.Mapping[str, t.Any] | None, needed: t.Iterable[str]) -> dict[str, Authority]:
    if not ca:
        raise PkiError("ca is required (or create_ca: true to create it)")
    return {name: load_authority(name, ca.get(name) or {}) for name in sorted(set(needed))}


#: What a plain YAML scalar may be here: no leading indicator, no ": " or " #", not a number.
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9@._/-]*(:+[A-Za-z0-9@._/\[\]-]+)*$")
#: Words YAML 1.1 reads as booleans or null.
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def kubeconfig(user: str, server: str, ca_pem: str, cert: str, key: str, cluster: str = "local") -> str:
    """A kubeconfig (YAML) that authenticates ``user`` with a client certificate to the cluster entry ``cluster``.

    The context is named ``user@cluster``, or ``user`` when the user's name already says which cluster.
    """
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    def scalar(text: str) -> str:
        # Plain when YAML reads it back as this string (every name the roles write), quoted otherwise: a cluster
        # named "yes" or "null" would otherwise read back as a boolean or nothing.
        plain = _PLAIN.match(text) and text.lower() not in _YAML_WORDS
        return text if plain else json.dumps(text)

    context = user if user.endswith("@" + cluster) else "%s@%s" % (user, cluster)
    server, cluster, user, context = scalar(server), scalar(cluster), scalar(user), scalar(context)
    return "\n".join([
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: %s" % cluster,
        "  cluster:",
        "    server: %s" % server,
        "    certificate-authority-data: %s" % b64(ca_pem),
        "users:",
        "- name: %s" % user,
        "  user:",
        "    client-certificate-data: %s" % b64(cert),
        "    client-key-data: %s" % b64(key),
        "contexts:",
        "- name: %s" % context,
        "  context:",
        "    cluster: %s" % cluster,
        "    user: %s" % user,
        "current-context: %s" % context,
        "",
    ])


def parse_time(value: str, what: str) -> datetime.datetime:
    """An ISO 8601 time (``Z`` or an offset; UTC when it has neither)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise PkiError("%s must be an ISO 8601 time such as 2026-12-06T14:00:00Z, not %r" % (what, value)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def rotation_reason(current: t.Mapping[str, t.Any] | None, issued_before: datetime.datetime | None) -> str | None:
    """Why a certificate that is still right is issued again on request: always without ``issued_before``, else
    when it was issued before that time (so that a run asked again with the same time changes nothing)."""
    if issued_before is None:
        return "rotation asked"
    issued = issued_on(load_cert(current["cert"], "certificate")) if current else None
    if issued is not None and issued < issued_before:
        return "issued on %s, before %s: rotation asked" % (issued.isoformat(), issued_before.isoformat())
    return None


def converge_leaves(replica: ReplicaIdentity, authorities: t.Mapping[str, Authority],
                    current: t.Mapping[str, t.Any], wanted: t.Iterable[str], key_type: str, days: int,
                    renew_before_days: int, rsa_size: int, check_mode: bool,
                    reissue: t.Iterable[str] = (), issued_before: datetime.datetime | None = None,
                    ) -> dict[str, dict[str, t.Any]]:
    """Each wanted leaf: kept when still right, issued again otherwise (not in check mode). A leaf in ``reissue`` is
    issued again although it is right, unless it was issued at or after ``issued_before``."""
    specs = leaf_specs(replica)
    renew_before = datetime.timedelta(days=renew_before_days)
    rotated = set(reissue)
    result: dict[str, dict[str, t.Any]] = {}
    for name in wanted:
        spec = specs[name]
        authority = authorities[spec.authority]
        now_there = current.get(name)
        reason = reissue_reason(spec, now_there, authority, renew_before)
        if reason is None and name in rotated:
            reason = rotation_reason(now_there, issued_before)
        before = None
        if now_there and now_there.get("cert"):
            try:
                before = describe(load_cert(now_there["cert"], name))
            except PkiError:
                before = None
        if reason is None:
            cert, key = now_there["cert"], now_there["key"]
        elif check_mode:
            cert, key = None, None
        else:
            cert, key = issue(spec, authority, key_type, days, rsa_size)
        result[name] = {"cert": cert, "key": key, "reissued": reason is not None, "reason": reason,
                        "authority": spec.authority, "before": before,
                        "after": describe(load_cert(cert, name)) if cert else _predicted(spec)}
    return result


def _predicted(spec: LeafSpec) -> dict[str, t.Any]:
    return {"subject": ",".join(["CN=%s" % spec.common_name] + ["O=%s" % o for o in spec.organizations]),
            "dns_names": sorted(spec.dns_names), "ip_addresses": sorted(spec.ip_addresses),
            "usages": sorted(spec.usages), "not_after": None, "serial": None}
