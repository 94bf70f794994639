# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: keys, certificate authorities and leaf certificates."""

from __future__ import annotations

import datetime
import ipaddress
import traceback
import typing as t

from ansible.module_utils.basic import missing_required_lib

CRYPTOGRAPHY_IMPORT_ERROR: str | None
try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

KEY_TYPES = ("ecdsa", "rsa")
USAGES = ("server", "client")
#: How far back a new certificate's validity starts, for clocks that lag the controller's.
BACKDATE = datetime.timedelta(minutes=5)


class PkiError(Exception):
    """Bad certificate material or input, with a message that names it."""


def exit_with(module: t.Any, run: t.Callable[[t.Any], dict]) -> None:
    """Exit ``module`` (an AnsibleModule) with what ``run(module)`` returns; fail it naming the cause when the
    cryptography library is missing or ``run`` raises PkiError."""
    if CRYPTOGRAPHY_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    try:
        result = run(module)
    except PkiError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_key(key_type: str = "ecdsa", rsa_size: int = 2048) -> t.Any:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_size)
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise PkiError("key_type must be one of %s, not %s" % (", ".join(KEY_TYPES), key_type))


def key_pem(key: t.Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: t.Any) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def cert_pem(cert: t.Any) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_key(pem: str, what: str) -> t.Any:
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError("%s is not an unencrypted PEM private key: %s" % (what, exc)) from None


def load_cert(pem: str, what: str) -> t.Any:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise PkiError("%s is not a PEM certificate: %s" % (what, exc)) from None


def _same_public_key(key: t.Any, cert: t.Any) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


def signed_by(cert: t.Any, ca_cert: t.Any) -> bool:
    """Was ``cert`` signed by the key of ``ca_cert``?"""
    public = ca_cert.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        else:
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        return False
    return cert.issuer == ca_cert.subject


def not_after(cert: t.Any) -> datetime.datetime:
    return cert.not_valid_after_utc


def issued_on(cert: t.Any) -> datetime.datetime:
    """When ``cert`` was issued: the start of its validity, less the backdating of the certificates issued here."""
    return cert.not_valid_before_utc + BACKDATE


class Authority(t.NamedTuple):
    """A loaded certificate authority: ``cert`` signs (its key is ``key``); ``cert_pem`` is what those who verify
    trust, the signing certificate alone or, while the CA is rotated, a bundle of it and the other CA certificate;
    ``signer_pem`` is the signing certificate alone (kube-controller-manager signs with one certificate only)."""

    name: str
    cert: t.Any
    key: t.Any
    cert_pem: str
    key_pem: str
    signer_pem: str


def new_authority(name: str, common_name: str, key_type: str, days: int, rsa_size: int = 2048) -> Authority:
    key = new_key(key_type, rsa_size)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = now() - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    text = cert_pem(cert)
    return Authority(name, cert, key, text, key_pem(key), text)


def load_certs(pem: str, what: str) -> list[t.Any]:
    """Every certificate of a PEM bundle, in order (one at least)."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise PkiError("%s is not a PEM certificate: %s" % (what, exc)) from None
    return certs


def load_authority(name: str, material: t.Mapping[str, t.Any]) -> Authority:
    """Load and check a CA: its key matches its certificate, it is a CA, it has not expired. While the CA is rotated,
    ``cert`` is a bundle of two CA certificates, and the one that matches ``key`` signs."""
    if not isinstance(material, dict) or not material.get("cert") or not material.get("key"):
        raise PkiError("ca.%s needs both 'cert' and 'key'" % name)
    certs = load_certs(material["cert"], "ca.%s.cert" % name)
    key = load_key(material["key"], "ca.%s.key" % name)
    matching = [c for c in certs if _same_public_key(key, c)]
    if not matching:
        raise PkiError("ca.%s.key does not match %sca.%s.cert (%s)" % (
            name, "" if len(certs) == 1 else "any of the %d certificates in " % len(certs), name,
            "; ".join(c.subject.rfc4514_string() for c in certs)))
    cert = matching[0]
    for each in certs:
        try:
            constraints = each.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise PkiError("ca.%s.cert (%s) is not a CA certificate" % (name, each.subject.rfc4514_string()))
    if not_after(cert) <= now():
        raise PkiError("ca.%s.cert (%s) expired on %s" % (name, cert.subject.rfc4514_string(), not_after(cert).isoformat()))
    return Authority(name, cert, key, material["cert"], material["key"], cert_pem(cert))


class LeafSpec(t.NamedTuple):
    """What one leaf certificate must say."""

    name: str  # "etcd-peer", "apiserver"...
    authority: str  # "etcd", "cluster", "front_proxy"
    common_name: str
    organizations: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    usages: tuple[str, ...]  # "server", "client"


def _names(spec: LeafSpec) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec.organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name))
    return x509.Name(attributes)


def _usage_oids(usages: t.Iterable[str]) -> list[t.Any]:
    oids = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}
    return [oids[u] for u in usages]


def issue(spec: LeafSpec, authority: Authority, key_type: str, days: int, rsa_size: int = 2048) -> tuple[str, str]:
    """A new key and certificate for ``spec``, signed by ``authority``: (cert PEM, key PEM)."""
    key = new_key(key_type, rsa_size)
    start = now() - BACKDATE
    end = min(start + datetime.timedelta(days=days), not_after(authority.cert))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_names(spec))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=key_type == "rsa",
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(_usage_oids(spec.usages)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.cert.public_key()), critical=False)
    )
    sans = [x509.DNSName(n) for n in spec.dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in spec.ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(authority.key, hashes.SHA256())
    return cert_pem(cert), key_pem(key)


def describe(cert: t.Any) -> dict[str, t.Any]:
    """What a certificate says, for diffs and return values."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = sorted(sans.get_values_for_type(x509.DNSName))
        ips = sorted(str(i) for i in sans.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        known = (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH))
        usages = sorted(n for n, oid in known if oid in eku)
    except x509.ExtensionNotFound:
        usages = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "dns_names": dns,
        "ip_addresses": ips,
        "usages": usages,
        "not_after": not_after(cert).isoformat(),
        "serial": format(cert.serial_number, "x"),
    }


def reissue_reason(spec: LeafSpec, current: t.Mapping[str, t.Any] | None, authority: Authority,
                   renew_before: datetime.timedelta) -> str | None:
    """Why the current certificate of ``spec`` must be issued again, or None when it is good."""
    if not current or not current.get("cert") or not current.get("key"):
        return "missing"
    try:
        cert = load_cert(current["cert"], spec.name)
        key = load_key(current["key"], spec.name)
    except PkiError as exc:
        return "unreadable (%s)" % exc
    if not _same_public_key(key, cert):
        return "its key does not match its certificate"
    if not signed_by(cert, authority.cert):
        return "not signed by the %s CA" % authority.name
    seen = describe(cert)
    if cert.subject != _names(spec):
        return "subject is %s, wanted %s" % (seen["subject"], _names(spec).rfc4514_string())
    if seen["dns_names"] != sorted(spec.dns_names):
        return "DNS names are %s, wanted %s" % (seen["dns_names"], sorted(spec.dns_names))
    if seen["ip_addresses"] != sorted(str(ipaddress.ip_address(i)) for i in spec.ip_addresses):
        return "IP addresses are %s, wanted %s" % (seen["ip_addresses"], sorted(spec.ip_addresses))
    if seen["usages"] != sorted(spec.usages):
        return "usages are %s, wanted %s" % (seen["usages"], sorted(spec.usages))
    if not_after(cert) - now() < renew_before:
        return "expires on %s, within the renewal window" % not_after(cert).isoformat()
    return None
