# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeha.gce lab stand-ins for Kubernetes binaries, NOT Kubernetes: the code they share.

The scripts next to this module (kube-apiserver, kube-controller-manager,
kube-scheduler) imitate the real binaries at the interfaces the
kubeha.gce collection touches, with the standard library of python3 only:

- command lines parsed as pflag/cobra parse them, against the flag names of
  Kubernetes v1.36 (an unknown flag fails as it does for real), and feature
  gates checked against the release the stand-in is built as (v1.36.0 unless
  the lab builds it as another, see GIT_VERSION);
- klog-like logs on stderr;
- kubeconfig files (YAML or JSON) with embedded data or file paths;
- a small Kubernetes API client (client certificates, tokens, Status errors);
- an HTTPS server that re-reads its certificate when the files change.

See docs/lab.md, section "Control-plane stand-ins".
"""

from __future__ import annotations

import base64
import datetime
import http.client
import http.server
import json
import os
import random
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import typing as t
import urllib.parse
import uuid

#: The version every stand-in reports (``--version``, ``/version``, ``kubectl version``): v1.36.0's, unless the lab
#: built the stand-in as another release (tests/lab/kubeha_lab writes kubeha_standin_build.py into each built binary).
try:
    from kubeha_standin_build import GIT_VERSION  # type: ignore[import-not-found]  # pylint: disable=import-error
except ImportError:
    GIT_VERSION = "v1.36.0-kubeha-lab-standin"

#: Feature gates whose value a release no longer lets be set, by minor version: removed ones are unknown to it, and
#: locked ones may only be set to the value they are locked to. From the release notes (CHANGELOG-1.37.md: the GA gate
#: AnyVolumeDataSource removed, DeclarativeValidationTakeover locked to false; AnyVolumeDataSource is locked to true
#: since v1.33). The lab's upgrade runs with a gate of one release that the next refuses.
FEATURE_GATES_REMOVED = {"37": {"AnyVolumeDataSource"}}
FEATURE_GATES_LOCKED = {"36": {"AnyVolumeDataSource": True}, "37": {"DeclarativeValidationTakeover": False}}
KUSTOMIZE_VERSION = "v5.4.2"


def version_info(git_version: str | None = None) -> dict[str, str]:
    """The version object Kubernetes binaries and ``/version`` report."""
    git_version = git_version or GIT_VERSION
    match = re.match(r"v?(\d+)\.(\d+)", git_version)
    major, minor = (match.group(1), match.group(2)) if match else ("", "")
    return {
        "major": major, "minor": minor, "gitVersion": git_version,
        "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "python%d.%d.%d" % sys.version_info[:3], "compiler": "gc",
        "platform": "linux/amd64",
    }


# -- logging -----------------------------------------------------------------------------------

class Log:
    """klog's text format on stderr: ``I1125 10:11:12.123456   12345 file.py:42] message``."""

    def __init__(self) -> None:
        self.verbosity = 0
        self._lock = threading.Lock()

    @staticmethod
    def _quote(value: t.Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return json.dumps(str(value))

    def _emit(self, severity: str, text: str) -> None:
        now = datetime.datetime.now()
        frame = sys._getframe(2)  # pylint: disable=protected-access
        line = "%s%s %s %7d %s:%d] %s\n" % (
            severity, now.strftime("%m%d"), now.strftime("%H:%M:%S.%f"), os.getpid(),
            os.path.basename(frame.f_code.co_filename), frame.f_lineno, text)
        with self._lock:
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def _format(self, message: str, structured: bool, values: dict[str, t.Any]) -> str:
        if not structured:
            return message
        return " ".join([json.dumps(message)] + ["%s=%s" % (k, self._quote(v)) for k, v in values.items()])

    def info(self, message: str, level: int = 0) -> None:
        """klog.Infof: a plain message."""
        if level <= self.verbosity:
            self._emit("I", self._format(message, False, {}))

    def info_s(self, message: str, level: int = 0, **values: t.Any) -> None:
        """klog.InfoS: a quoted message and key="value" pairs."""
        if level <= self.verbosity:
            self._emit("I", self._format(message, True, values))

    def warning(self, message: str) -> None:
        self._emit("W", self._format(message, False, {}))

    def error(self, message: str) -> None:
        self._emit("E", self._format(message, False, {}))

    def error_s(self, message: str, **values: t.Any) -> None:
        self._emit("E", self._format(message, True, values))


LOG = Log()


def fail(message: str, code: int = 1) -> t.NoReturn:
    """Exit as the components do after a fatal configuration error."""
    LOG.error_s("command failed", err=message)
    sys.exit(code)


# -- command lines (pflag and cobra) -----------------------------------------------------------

class UsageError(Exception):
    """A command-line error, reported as cobra reports it."""


#: Value kinds: bool and version take no separate argument; list kinds accumulate.
KINDS = {"bool", "version", "string", "strings", "int", "float", "duration", "map"}
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("1m30s", "500ms", "0"); ValueError like time.ParseDuration."""
    value = text.strip()
    sign = 1.0
    if value[:1] in "+-" and value:
        sign = -1.0 if value[0] == "-" else 1.0
        value = value[1:]
    if value == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if not match:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        if value and re.fullmatch(r"[\d.]+", value):
            raise ValueError('time: missing unit in duration "%s"' % text)
        raise ValueError('time: invalid duration "%s"' % text)
    return sign * total


def parse_bool(text: str) -> bool:
    if text not in _BOOLS:
        raise ValueError('strconv.ParseBool: parsing "%s": invalid syntax' % text)
    return _BOOLS[text]


def _parse_int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        try:
            return int(text, 10)
        except ValueError:
            raise ValueError('strconv.ParseInt: parsing "%s": invalid syntax' % text) from None


class FlagSet:
    """A whitelist of flags: ``name kind [shorthand]`` per line; ``#`` starts a comment."""

    def __init__(self, table: str) -> None:
        self.kinds: dict[str, str] = {}
        self.short: dict[str, str] = {}
        self.optional_value: dict[str, str] = {}
        for line in table.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            name, kind = parts[0], parts[1]
            if "=" in kind:  # a string flag with pflag's NoOptDefVal: kind=default
                kind, self.optional_value[name] = kind.split("=", 1)
            if kind not in KINDS:
                raise ValueError("flag %s: unknown kind %s" % (name, kind))
            self.kinds[name] = kind
            if len(parts) > 2:
                self.short[parts[2]] = name

    def merged(self, other: FlagSet) -> FlagSet:
        result = FlagSet("")
        for source in (self, other):
            result.kinds.update(source.kinds)
            result.short.update(source.short)
            result.optional_value.update(source.optional_value)
        return result

    def _label(self, name: str) -> str:
        for short, long_name in self.short.items():
            if long_name == name:
                return "-%s, --%s" % (short, name)
        return "--%s" % name

    def _check(self, name: str, value: str) -> None:
        kind = self.kinds[name]
        try:
            if kind == "bool":
                parse_bool(value)
            elif kind == "int":
                _parse_int(value)
            elif kind == "float":
                try:
                    float(value)
                except ValueError:
                    raise ValueError('strconv.ParseFloat: parsing "%s": invalid syntax' % value) from None
            elif kind == "duration":
                parse_duration(value)
        except ValueError as exc:
            raise UsageError('invalid argument "%s" for "%s" flag: %s' % (value, self._label(name), exc)) from None

    def parse(self, argv: t.Sequence[str]) -> tuple[Flags, list[str]]:
        """(flags given, positional arguments), as pflag parses them (interspersed)."""
        given: dict[str, list[str]] = {}
        positional: list[str] = []
        args = list(argv)
        index = 0

        def take(name: str, value: str) -> None:
            self._check(name, value)
            given.setdefault(name, []).append(value)

        while index < len(args):
            arg = args[index]
            index += 1
            if arg == "--":
                positional.extend(args[index:])
                break
            if arg.startswith("--"):
                body = arg[2:]
                if not body or body.startswith("-") or body.startswith("="):
                    raise UsageError("bad flag syntax: %s" % arg)
                name, has_value, value = body.partition("=")
                if name not in self.kinds:
                    raise UsageError("unknown flag: --%s" % name)
                kind = self.kinds[name]
                if has_value:
                    take(name, value)
                elif kind in ("bool", "version"):
                    take(name, "true")
                elif name in self.optional_value:
                    take(name, self.optional_value[name])
                elif index < len(args):
                    take(name, args[index])
                    index += 1
                else:
                    raise UsageError("flag needs an argument: --%s" % name)
            elif arg.startswith("-") and len(arg) > 1:
                shorthands = arg[1:]
                while shorthands:
                    char, shorthands = shorthands[0], shorthands[1:]
                    if char not in self.short:
                        raise UsageError("unknown shorthand flag: '%s' in %s" % (char, arg))
                    name = self.short[char]
                    kind = self.kinds[name]
                    if shorthands.startswith("="):
                        take(name, shorthands[1:])
                        shorthands = ""
                    elif kind in ("bool", "version"):
                        take(name, "true")
                    elif shorthands:
                        take(name, shorthands)
                        shorthands = ""
                    elif name in self.optional_value:
                        take(name, self.optional_value[name])
                    elif index < len(args):
                        take(name, args[index])
                        index += 1
                    else:
                        raise UsageError("flag needs an argument: '%s' in -%s" % (char, char))
            else:
                positional.append(arg)
        return Flags(self, given), positional


class Flags:
    """Parsed flag values, typed on access."""

    def __init__(self, flagset: FlagSet, given: dict[str, list[str]]) -> None:
        self.flagset = flagset
        self.given = given

    def __contains__(self, name: str) -> bool:
        return name in self.given

    def raw(self, name: str) -> str | None:
        values = self.given.get(name)
        return values[-1] if values else None

    def string(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        return default if value is None else parse_bool(value)

    def integer(self, name: str, default: int = 0) -> int:
        value = self.raw(name)
        return default if value is None else _parse_int(value)

    def duration(self, name: str, default: float) -> float:
        value = self.raw(name)
        return default if value is None else parse_duration(value)

    def strings(self, name: str) -> list[str]:
        """A strings flag: comma-separated values, accumulated over repeats."""
        result: list[str] = []
        for value in self.given.get(name, []):
            result.extend(item.strip() for item in value.split(",") if item.strip())
        return result


def parse_command_line(command: str, flagset: FlagSet, argv: t.Sequence[str],
                       usage: str = "") -> Flags:
    """Parse a component's command line; exit as cobra does on errors, --help and --version."""
    try:
        flags, positional = flagset.parse(argv)
    except UsageError as exc:
        sys.stderr.write("Error: %s\nRun '%s --help' for usage.\n" % (exc, command))
        sys.exit(1)
    if flags.boolean("help"):
        sys.stdout.write("%s is a kubeha.gce lab stand-in, NOT Kubernetes.\n%s\nUsage:\n  %s [flags]\n\nFlags:\n%s\n" % (
            command, usage, command, "\n".join("      --%s %s" % (n, k) for n, k in sorted(flagset.kinds.items()))))
        sys.exit(0)
    version = flags.raw("version")
    if version is not None and version != "false":
        if version in ("true", "raw"):
            info = version_info()
            sys.stdout.write("Kubernetes %s\n" % GIT_VERSION if version == "true" else "%r\n" % (info,))
            sys.exit(0)
        # --version=vX.Y.Z sets the reported version and goes on, as for real.
        globals()["GIT_VERSION"] = version
    if any(positional):
        sys.stderr.write('Error: "%s" does not take any arguments, got %s\n' % (command, json.dumps(positional)))
        sys.exit(1)
    if "v" in flags:
        LOG.verbosity = flags.integer("v")
    problem = feature_gate_problem(flags.strings("feature-gates") if "feature-gates" in flagset.kinds else [])
    if problem:
        sys.stderr.write("Error: invalid argument \"%s\" for \"--feature-gates\" flag: %s\n" % (
            flags.raw("feature-gates"), problem))
        sys.exit(1)
    return flags


def feature_gate_problem(gates: t.Sequence[str]) -> str:
    """Why the release this stand-in is built as refuses --feature-gates (Name=bool,...): empty when it does not."""
    minor = version_info()["minor"]
    for gate in gates:
        name, value = (gate.split("=", 1) + [""])[:2]
        name = name.strip()
        try:
            enabled = parse_bool(value.strip())
        except ValueError:
            return "invalid value of %s=%s, err: strconv.ParseBool: parsing %s: invalid syntax" % (
                name, value, json.dumps(value))
        if name in FEATURE_GATES_REMOVED.get(minor, ()):
            return "unrecognized feature gate: %s" % name
        locked = FEATURE_GATES_LOCKED.get(minor, {})
        if name in locked and locked[name] != enabled:
            return "cannot set feature gate %s to %s, feature is locked to %s" % (
                name, str(enabled).lower(), str(locked[name]).lower())
    return ""


def check_readable(flags: Flags, names: t.Iterable[str]) -> None:
    """Every named file must exist and be readable; exit 1 naming the flag and path otherwise."""
    problems = []
    for name in names:
        for path in (flags.strings(name) if flags.flagset.kinds.get(name) == "strings" else [flags.raw(name)]):
            if not path:
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                problems.append("--%s: open %s: %s" % (name, path, (exc.strerror or str(exc)).lower()))
    if problems:
        fail("[%s]" % ", ".join(problems) if len(problems) > 1 else problems[0])


def check_key_pair(cert_flag: str, key_flag: str, flags: Flags) -> None:
    """Both or neither of a certificate/key pair; when both, the key must match the certificate."""
    cert, key = flags.string(cert_flag), flags.string(key_flag)
    if bool(cert) != bool(key):
        fail("--%s and --%s must be specified together" % (cert_flag, key_flag))
    if cert:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            fail("--%s %s and --%s %s: unable to load the key pair: %s" % (cert_flag, cert, key_flag, key, exc))


def check_ca_file(flag: str, flags: Flags) -> None:
    path = flags.string(flag)
    if path:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError) as exc:
            fail("--%s %s: no certificate authority in it: %s" % (flag, path, exc))


def check_ip(flag: str, flags: Flags) -> None:
    import ipaddress  # pylint: disable=import-outside-toplevel
    value = flags.string(flag)
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            fail('--%s "%s" is not a valid IP address' % (flag, value))


# -- YAML (the subset kubeconfigs and simple manifests use) ------------------------------------

class YamlError(ValueError):
    pass


_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def _plain(text: str) -> t.Any:
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text) and any(c.isdigit() for c in text):
        return float(text)
    return text


class _Yaml:
    """Block mappings and sequences, plain/quoted scalars, ``|``/``>`` block scalars, ``{}``/``[]``."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.index = 0

    def error(self, message: str, line: int | None = None) -> YamlError:
        return YamlError("YAML line %d: %s (the stand-ins read a YAML subset; JSON always works)" % (
            (self.index if line is None else line) + 1, message))

    @staticmethod
    def _strip_comment(text: str) -> str:
        quote = ""
        for position, char in enumerate(text):
            if quote:
                if char == quote:
                    quote = ""
            elif char in "'\"" and (position == 0 or text[position - 1] in " :[{,-"):
                quote = char
            elif char == "#" and (position == 0 or text[position - 1] in " \t"):
                return text[:position].rstrip()
        return text.rstrip()

    def _next(self) -> tuple[int, str] | None:
        """(indent, content) of the next meaningful line, without consuming it."""
        while self.index < len(self.lines):
            raw = self.lines[self.index]
            if "\t" in raw[:len(raw) - len(raw.lstrip())]:
                raise self.error("tabs are not allowed in indentation")
            content = self._strip_comment(raw.strip())
            if content:
                return len(raw) - len(raw.lstrip(" ")), content
            self.index += 1
        return None

    def parse(self) -> t.Any:
        found = self._next()
        if found is None:
            return None
        value = self.node(found[0])
        if self._next() is not None:
            raise self.error("unexpected content")
        return value

    def node(self, indent: int) -> t.Any:
        found = self._next()
        assert found is not None
        content = found[1]
        if content == "-" or content.startswith("- "):
            return self.sequence(indent)
        if self._key(content) is not None:
            return self.mapping(indent)
        self.index += 1
        return self.scalar(content)

    def _key(self, content: str) -> tuple[str, str] | None:
        """(key, rest after the colon) when content is a mapping entry."""
        if content[:1] in "\"'":
            quote = content[0]
            end = 1
            while end < len(content):
                if content[end] == "\\" and quote == '"':
                    end += 2
                    continue
                if content[end] == quote:
                    if quote == "'" and content[end + 1:end + 2] == "'":
                        end += 2
                        continue
                    break
                end += 1
            rest = content[end + 1:].lstrip()
            if rest.startswith(":") and (len(rest) == 1 or rest[1] in " \t"):
                return str(self.scalar(content[:end + 1])), rest[1:].strip()
            return None
        if content[:1] in "[{&*!|>%@`":
            return None
        match = re.match(r"(.*?):(\s|$)", content)
        if not match:
            return None
        return match.group(1).strip(), content[match.end():].strip()

    def mapping(self, indent: int) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {}
        while True:
            found = self._next()
            if found is None or found[0] < indent:
                return result
            if found[0] > indent:
                raise self.error("bad indentation of a mapping entry")
            entry = self._key(found[1])
            if entry is None:
                raise self.error("expected a 'key: value' entry")
            key, rest = entry
            if key in result:
                raise self.error("duplicate key %r" % key)
            line = self.index
            self.index += 1
            if rest[:1] in ("|", ">"):
                result[key] = self.block(indent, rest, line)
            elif rest:
                result[key] = self.scalar(rest, line)
            else:
                nested = self._next()
                if nested is None or nested[0] < indent:
                    result[key] = None
                elif nested[0] == indent:
                    is_item = nested[1] == "-" or nested[1].startswith("- ")
                    result[key] = self.sequence(indent) if is_item else None
                else:
                    result[key] = self.node(nested[0])

    def sequence(self, indent: int) -> list[t.Any]:
        result: list[t.Any] = []
        while True:
            found = self._next()
            if found is None or found[0] < indent:
                return result
            if found[0] > indent or not (found[1] == "-" or found[1].startswith("- ")):
                if found[0] == indent and self._key(found[1]) is not None:
                    return result  # the sequence was a compact value of a mapping key
                raise self.error("expected a '- ' sequence item")
            raw = self.lines[self.index]
            rest = found[1][1:]
            if not rest.strip():
                self.index += 1
                nested = self._next()
                result.append(None if nested is None or nested[0] <= indent else self.node(nested[0]))
                continue
            # Re-read the rest of the line as if it started on its own, further indented.
            item_indent = indent + 1 + (len(rest) - len(rest.lstrip(" ")))
            self.lines[self.index] = " " * item_indent + raw.strip()[1:].lstrip(" ")
            if rest.strip()[:1] in ("|", ">"):
                raise self.error("block scalars as sequence items are not supported")
            result.append(self.node(item_indent))

    def block(self, indent: int, header: str, line: int) -> str:
        style, chomp = header[0], header[1:].strip()
        if chomp not in ("", "-", "+"):
            raise self.error("unsupported block scalar header %r" % header, line)
        collected: list[str] = []
        block_indent = None
        while self.index < len(self.lines):
            raw = self.lines[self.index]
            if raw.strip():
                width = len(raw) - len(raw.lstrip(" "))
                if width <= indent:
                    break
                if block_indent is None:
                    block_indent = width
                if width < block_indent:
                    break
                collected.append(raw[block_indent:])
            else:
                collected.append("")
            self.index += 1
        while collected and collected[-1] == "" and chomp != "+":
            collected.pop()
        if style == ">":
            text, after_break = "", True
            for part in collected:
                if not part:
                    text, after_break = text + "\n", True
                else:
                    text, after_break = text + ("" if after_break else " ") + part, False
        else:
            text = "\n".join(collected)
        return text if chomp == "-" else text + "\n" if collected else ""

    def scalar(self, text: str, line: int | None = None) -> t.Any:
        text = text.strip()
        if text.startswith('"'):
            if not text.endswith('"') or len(text) < 2:
                raise self.error("unterminated or multi-line double-quoted string", line)
            try:
                return json.loads(text.replace("\\/", "/"))
            except ValueError:
                raise self.error("unsupported escape in %s" % text, line) from None
        if text.startswith("'"):
            if not text.endswith("'") or len(text) < 2:
                raise self.error("unterminated or multi-line single-quoted string", line)
            return text[1:-1].replace("''", "'")
        if text in ("{}", "[]"):
            return {} if text == "{}" else []
        if text[:1] in "[{" and text[-1:] == "]}"[text[0] == "{"]:
            inner = text[1:-1]
            if any(c in inner for c in "[]{}\"'"):
                raise self.error("nested or quoted flow collections are not supported", line)
            items = [item.strip() for item in inner.split(",") if item.strip()]
            if text[0] == "[":
                return [_plain(item) for item in items]
            pairs = [re.split(r":(?:\s+|$)", item, maxsplit=1) for item in items]
            if any(len(pair) != 2 for pair in pairs):
                raise self.error("expected 'key: value' pairs in %s" % text, line)
            return {key.strip(): _plain(value.strip()) for key, value in pairs}
        if text[:1] in "{&*!|>%@`":
            raise self.error("unsupported YAML construct %r" % text, line)
        return _plain(text)


def yaml_load(text: str) -> t.Any:
    """One YAML document (or JSON, a subset of YAML)."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        return json.loads(stripped)
    return _Yaml(text).parse()


# -- kubeconfig and the API client -------------------------------------------------------------

class ConfigError(Exception):
    pass


def _named(items: t.Any, name: str, what: str, path: str) -> dict[str, t.Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(what) or {}
    raise ConfigError('%s: %s "%s" not found' % (path, what, name))


def load_kubeconfig(path: str, context: str = "", cluster: str = "", user: str = "") -> dict[str, t.Any]:
    """The cluster and user of a kubeconfig's (current) context, file paths made absolute.

    Returns ``{"server", "certificate-authority(-data)", "insecure-skip-tls-verify",
    "tls-server-name", "client-certificate(-data)", "client-key(-data)", "token", "namespace"}``.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml_load(handle.read())
    except OSError as exc:
        raise ConfigError("%s: %s" % (path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise ConfigError("%s: %s" % (path, exc)) from None
    if not isinstance(config, dict):
        raise ConfigError("%s: not a kubeconfig (no mapping at the top)" % path)
    if config.get("kind", "Config") != "Config":
        raise ConfigError('%s: kind is "%s", not "Config"' % (path, config.get("kind")))
    context_name = context or config.get("current-context") or ""
    ctx: dict[str, t.Any] = {}
    if context_name:
        ctx = _named(config.get("contexts"), context_name, "context", path)
    elif not cluster:
        raise ConfigError("%s: no current-context and no context given" % path)
    cluster_name = cluster or ctx.get("cluster") or ""
    user_name = user or ctx.get("user") or ""
    result: dict[str, t.Any] = {"namespace": ctx.get("namespace") or ""}
    base = os.path.dirname(os.path.abspath(path))
    sections = [(_named(config.get("clusters"), cluster_name, "cluster", path) if cluster_name else {}),
                (_named(config.get("users"), user_name, "user", path) if user_name else {})]
    for section in sections:
        for key, value in section.items():
            if key in ("certificate-authority", "client-certificate", "client-key", "tokenFile") and value:
                value = os.path.join(base, value)
            result[key] = value
    if not result.get("server"):
        raise ConfigError("%s: the cluster of context %r has no server" % (path, context_name))
    return result


class ApiError(Exception):
    """A failed request: ``status`` 0 when the server could not be reached."""

    def __init__(self, status: int, message: str, body: t.Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def reason(self) -> str:
        return (self.body or {}).get("reason", "") if isinstance(self.body, dict) else ""


class ApiClient:
    """HTTPS to a Kubernetes API server, authenticated as a kubeconfig or flags say."""

    def __init__(self, server: str, ca_file: str = "", ca_data: str = "", cert_file: str = "",
                 key_file: str = "", cert_data: str = "", key_data: str = "", token: str = "",
                 insecure: bool = False, tls_server_name: str = "", timeout: float = 30.0) -> None:
        if "://" not in server:
            server = "https://" + server
        parsed = urllib.parse.urlsplit(server)
        self.scheme = parsed.scheme
        self.host = parsed.hostname or "localhost"
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.prefix = parsed.path.rstrip("/")
        self.server = server
        self.token = token
        self.timeout = timeout
        self.tls_server_name = tls_server_name or None
        self.context: ssl.SSLContext | None = None
        if self.scheme == "https":
            if insecure:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context(
                    cafile=ca_file or None,
                    cadata=base64.b64decode(ca_data).decode() if ca_data else None)
            if cert_file or cert_data:
                load_key_pair(context, cert_file, key_file, cert_data, key_data)
            self.context = context

    @classmethod
    def from_kubeconfig(cls, config: dict[str, t.Any], server: str = "", timeout: float = 30.0) -> ApiClient:
        token = config.get("token") or ""
        if not token and config.get("tokenFile"):
            with open(config["tokenFile"], encoding="utf-8") as handle:
                token = handle.read().strip()
        return cls(server or config["server"], ca_file=config.get("certificate-authority") or "",
                   ca_data=config.get("certificate-authority-data") or "",
                   cert_file=config.get("client-certificate") or "", key_file=config.get("client-key") or "",
                   cert_data=config.get("client-certificate-data") or "",
                   key_data=config.get("client-key-data") or "", token=token,
                   insecure=bool(config.get("insecure-skip-tls-verify")),
                   tls_server_name=config.get("tls-server-name") or "", timeout=timeout)

    def request(self, method: str, path: str, body: t.Any = None, timeout: float | None = None,
                content_type: str = "application/json") -> tuple[int, bytes]:
        """(HTTP status, body); ApiError(0, ...) when the server cannot be reached."""
        if self.context is not None:
            connection: http.client.HTTPConnection = _HTTPSConnection(
                self.host, self.port, context=self.context, timeout=timeout or self.timeout,
                server_name=self.tls_server_name)
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        headers = {"Accept": "application/json", "User-Agent": "kubeha-lab-standin/" + GIT_VERSION}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        try:
            connection.request(method, self.prefix + path, body=data, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.read()
        except ConnectionRefusedError:
            raise ApiError(0, "The connection to the server %s:%d was refused - did you specify the right host "
                              "or port?" % (self.host, self.port)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(0, "Unable to connect to the server: %s" % (exc,)) from None
        finally:
            connection.close()

    def json(self, method: str, path: str, body: t.Any = None, timeout: float | None = None,
             content_type: str = "application/json") -> t.Any:
        """The decoded answer; ApiError (with the Status object) for a non-2xx answer."""
        status, data = self.request(method, path, body, timeout, content_type)
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            decoded = None
        if status >= 300:
            message = decoded.get("message") if isinstance(decoded, dict) else None
            raise ApiError(status, message or data.decode("utf-8", "replace").strip() or "HTTP %d" % status, decoded)
        return decoded


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS whose certificate is checked against ``server_name`` (kubectl's --tls-server-name) if given."""

    def __init__(self, *args: t.Any, server_name: str | None = None, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            self.sock, server_hostname=self._server_name or self.host)


def load_key_pair(context: ssl.SSLContext, cert_file: str = "", key_file: str = "", cert_data: str = "",
                  key_data: str = "") -> None:
    """Load a certificate and key given as files or base64 data (written to a private temporary file)."""
    if cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
        return
    directory = tempfile.mkdtemp(prefix="kubeha-standin-")
    try:
        cert_path, key_path = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
        for path, file_value, data_value in ((cert_path, cert_file, cert_data), (key_path, key_file, key_data)):
            if file_value:
                with open(file_value, "rb") as source:
                    content = source.read()
            else:
                content = base64.b64decode(data_value or "")
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
        context.load_cert_chain(cert_path, key_path)
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


# -- serving HTTPS -----------------------------------------------------------------------------

class ServingCert:
    """A server TLS context from files, rebuilt when any of them changes (checked per connection)."""

    def __init__(self, cert_file: str, key_file: str, client_ca: str = "", name: str = "serving-cert",
                 static: ssl.SSLContext | None = None) -> None:
        self.files = [f for f in (cert_file, key_file, client_ca) if f]
        self.cert_file, self.key_file, self.client_ca = cert_file, key_file, client_ca
        self.name = name
        self._lock = threading.Lock()
        self._stamp: t.Any = None
        self._context = static
        if static is None:
            self._stamp = self._stat()
            self._context = self._build()
            LOG.info_s("Loaded a new cert/key pair", name="%s::%s::%s" % (name, cert_file, key_file))

    def _stat(self) -> t.Any:
        stamps = []
        for path in self.files:
            status = os.stat(path)
            stamps.append((status.st_mtime_ns, status.st_size, status.st_ino, status.st_ctime_ns))
        return stamps

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca:
            context.load_verify_locations(cafile=self.client_ca)
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def context(self) -> ssl.SSLContext:
        if not self.files or self._stamp is None:
            assert self._context is not None
            return self._context
        with self._lock:
            try:
                stamp = self._stat()
            except OSError as exc:
                LOG.error_s("Failed to stat the serving certificate files", err=str(exc))
                return self._context
            if stamp != self._stamp:
                try:
                    self._context = self._build()
                    self._stamp = stamp
                    LOG.info_s("Loaded a new cert/key pair", name="%s::%s::%s" % (
                        self.name, self.cert_file, self.key_file))
                except (ssl.SSLError, OSError) as exc:
                    # Half-written files: keep serving the previous pair and look again next time.
                    LOG.error_s("Failed to load the new serving cert/key pair", err=str(exc))
            assert self._context is not None
            return self._context


class TlsServer(http.server.ThreadingHTTPServer):
    """A threading HTTP(S) server; the TLS handshake runs in the connection's thread."""

    daemon_threads = True
    allow_reuse_address = True
    # Go's net.Listen asks for the kernel's somaxconn; socketserver's default of 5 would drop SYNs whenever
    # the accept loop falls behind on a busy host, which kube-apiserver does not.
    request_queue_size = 4096

    def __init__(self, address: tuple[str, int], handler: t.Any, tls: ServingCert | None) -> None:
        host = address[0] or "0.0.0.0"
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.tls = tls
        super().__init__((host, address[1]), handler)

    def get_request(self) -> tuple[t.Any, t.Any]:
        sock, address = self.socket.accept()
        sock.settimeout(30)
        if self.tls is None:
            return sock, address
        return self.tls.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def process_request_thread(self, request: t.Any, client_address: t.Any) -> None:
        if self.tls is not None:
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                LOG.info_s("TLS handshake error", level=2, remote="%s:%s" % client_address[:2], err=str(exc))
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            LOG.error_s("Unhandled error serving a request", err=repr(exc))


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that logs through klog at -v=3 and answers with a Content-Length."""

    protocol_version = "HTTP/1.1"
    # Go's net/http sets TCP_NODELAY; without it each response on a kept connection stalls 40 ms (delayed ACK).
    disable_nagle_algorithm = True
    server_version = "kubeha-lab-standin"
    sys_version = ""

    def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
        LOG.info_s("HTTP", level=3, verb=self.command, URI=self.path, remote=self.client_address[0],
                   detail=format % args)

    def send_bytes(self, status: int, body: bytes, content_type: str = "application/json",
                   headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# -- resources the stand-ins know ---------------------------------------------------------------

class Resource(t.NamedTuple):
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def qualified(self) -> str:
        """How messages name it: ``leases.coordination.k8s.io``, ``configmaps``."""
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    def path(self, namespace: str = "", name: str = "") -> str:
        base = "/apis/%s/%s" % (self.group, self.version) if self.group else "/api/%s" % self.version
        if self.namespaced and namespace:
            base += "/namespaces/%s" % urllib.parse.quote(namespace, safe="")
        base += "/" + self.plural
        return base + ("/" + urllib.parse.quote(name, safe="") if name else "")


#: Built-in resources of Kubernetes v1.36 that the stand-ins serve (group, version, plural, kind, namespaced).
RESOURCES = [
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Resource("", "v1", "services", "Service", True, ("svc",)),
    Resource("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    Resource("", "v1", "events", "Event", True, ("ev",)),
    Resource("", "v1", "pods", "Pod", True, ("po",)),
    Resource("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    Resource("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",)),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",)),
    Resource("", "v1", "nodes", "Node", False, ("no",)),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",)),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",)),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",)),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",)),
    Resource("batch", "v1", "jobs", "Job", True),
    Resource("batch", "v1", "cronjobs", "CronJob", True, ("cj",)),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",)),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    Resource("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
             ("crd", "crds")),
    Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
             "ValidatingWebhookConfiguration", False),
    Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
             "MutatingWebhookConfiguration", False),
]


def resource_by_path(group: str, plural: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.plural == plural]


_SELECTOR_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SELECTOR_TERMS = [
    ("exists", re.compile(r"^(%s)$" % _SELECTOR_KEY)),
    ("absent", re.compile(r"^!\s*(%s)$" % _SELECTOR_KEY)),
    ("compare", re.compile(r"^(%s)\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)$" % _SELECTOR_KEY)),
    ("set", re.compile(r"^(%s)\s+(in|notin)\s+\(([^()]*)\)$" % _SELECTOR_KEY)),
]


def parse_label_selector(selector: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """A label selector as (operator, key, value, values) terms; ValueError for what Kubernetes refuses too."""
    terms: list[tuple[str, str, str, tuple[str, ...]]] = []
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    for part in (p.strip() for p in parts):
        if not part:
            if selector.strip():
                raise ValueError("unable to parse requirement: found '', expected: identifier")
            continue
        for kind, pattern in _SELECTOR_TERMS:
            match = pattern.match(part)
            if not match:
                continue
            if kind == "exists":
                terms.append(("exists", match.group(1), "", ()))
            elif kind == "absent":
                terms.append(("!", match.group(1), "", ()))
            elif kind == "compare":
                operator = "!=" if match.group(2) == "!=" else "="
                terms.append((operator, match.group(1), match.group(3), ()))
            else:
                values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
                terms.append((match.group(2), match.group(1), "", values))
            break
        else:
            raise ValueError("unable to parse requirement: %s" % json.dumps(part))
    return terms


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` match a label selector (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (b,c)``,
    ``a notin (b)``)."""
    for operator, key, value, values in parse_label_selector(selector):
        if operator == "exists" and key not in labels or operator == "!" and key in labels:
            return False
        if operator == "=" and labels.get(key) != value or operator == "!=" and labels.get(key) == value:
            return False
        if operator == "in" and labels.get(key) not in values or operator == "notin" and labels.get(key) in values:
            return False
    return True


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(moment: datetime.datetime) -> str:
    """metav1.Time: seconds."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime.datetime) -> str:
    """metav1.MicroTime: microseconds."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- kube-controller-manager and kube-scheduler ------------------------------------------------

JITTER_FACTOR = 1.2


class LeaderElector:
    """client-go's leader election on a coordination.k8s.io/v1 Lease, through the API server."""

    def __init__(self, client: ApiClient, namespace: str, name: str, identity: str, lease_duration: float,
                 renew_deadline: float, retry_period: float) -> None:
        self.client = client
        self.lease = Resource("coordination.k8s.io", "v1", "leases", "Lease", True)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.description = "%s/%s" % (namespace, name)
        self.observed_spec = ""
        self.observed_time = 0.0
        self.leading = False

    @staticmethod
    def validate(lease_duration: float, renew_deadline: float, retry_period: float) -> list[str]:
        errors = []
        if lease_duration <= renew_deadline:
            errors.append("leaseDuration must be greater than renewDeadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            errors.append("renewDeadline must be greater than retryPeriod*JitterFactor")
        for value, name in ((lease_duration, "leaseDuration"), (renew_deadline, "renewDeadline"),
                            (retry_period, "retryPeriod")):
            if value < 1e-3:
                errors.append("%s must be greater than zero" % name)
        return errors

    def _observe(self, spec: dict[str, t.Any]) -> None:
        text = json.dumps(spec, sort_keys=True)
        if text != self.observed_spec:
            self.observed_spec = text
            self.observed_time = _monotonic()

    def try_acquire_or_renew(self, timeout: float) -> bool:
        now = micro_time(utc_now())
        record = {"holderIdentity": self.identity, "leaseDurationSeconds": int(round(self.lease_duration)) or 1,
                  "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
        path = self.lease.path(self.namespace, self.name)
        try:
            lease = self.client.json("GET", path, timeout=timeout)
        except ApiError as exc:
            if exc.status != 404:
                LOG.error("error retrieving resource lock %s: %s" % (self.description, exc))
                return False
            body = {"apiVersion": self.lease.api_version, "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": record}
            try:
                created = self.client.json("POST", self.lease.path(self.namespace), body, timeout=timeout)
            except ApiError as create_error:
                LOG.error("error initially creating leader election record: %s" % create_error)
                return False
            self._observe(created.get("spec") or {})
            return True
        spec = lease.get("spec") or {}
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or 0)
        if holder and holder != self.identity and self.observed_time + duration > _monotonic():
            LOG.info("lock is held by %s and has not yet expired" % holder, level=4)
            return False
        if holder == self.identity:
            record["acquireTime"] = spec.get("acquireTime") or now
            record["leaseTransitions"] = int(spec.get("leaseTransitions") or 0)
        else:
            record["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = record
        try:
            updated = self.client.json("PUT", path, lease, timeout=timeout)
        except ApiError as exc:
            LOG.error("Failed to update lock: %s" % exc)
            return False
        self._observe(updated.get("spec") or {})
        return True

    def acquire(self) -> None:
        LOG.info("attempting to acquire leader lease %s..." % self.description)
        while not self.try_acquire_or_renew(self.renew_deadline):
            _sleep(self.retry_period * (1 + random.random() * JITTER_FACTOR))
        self.leading = True
        LOG.info("successfully acquired lease %s" % self.description)

    def renew(self) -> None:
        """Keep the lease until a renewal fails for renewDeadline; then return."""
        while True:
            deadline = _monotonic() + self.renew_deadline
            while True:
                remaining = deadline - _monotonic()
                if remaining > 0 and self.try_acquire_or_renew(max(0.5, remaining)):
                    break
                if _monotonic() >= deadline:
                    LOG.info("failed to renew lease %s: context deadline exceeded" % self.description)
                    self.leading = False
                    return
                _sleep(min(self.retry_period, max(0.0, deadline - _monotonic())))
            _sleep(self.retry_period)


def _monotonic() -> float:
    return time.monotonic()


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


class ComponentHandler(QuietHandler):
    """/healthz, /livez and /readyz of kube-controller-manager and kube-scheduler (anonymous, as by default)."""

    elector: LeaderElector | None = None

    def do_GET(self) -> None:  # pylint: disable=invalid-name
        path, query = (self.path.split("?", 1) + [""])[:2]
        kind = path.strip("/").split("/")[0]
        if kind not in ("healthz", "livez", "readyz"):
            self.send_bytes(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        if "verbose" in urllib.parse.parse_qs(query, keep_blank_values=True):
            lines = ["[+]ping ok"] + (["[+]leaderElection ok"] if self.elector and kind == "healthz" else [])
            body = "\n".join(lines) + "\n%s check passed\n" % kind
            self.send_bytes(200, body.encode(), "text/plain; charset=utf-8")
        else:
            self.send_bytes(200, b"ok", "text/plain; charset=utf-8")

    do_HEAD = do_GET


class Component(t.NamedTuple):
    command: str
    flags: FlagSet
    secure_port: int
    file_flags: tuple[str, ...]
    lost_message: str


def _scheduler_config(path: str) -> dict[str, t.Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml_load(handle.read()) or {}
    except (OSError, ValueError) as exc:
        fail("--config %s: %s" % (path, exc))
    if not isinstance(config, dict) or config.get("kind") != "KubeSchedulerConfiguration":
        fail("--config %s: not a KubeSchedulerConfiguration" % path)
    return config


def run_component(component: Component, argv: t.Sequence[str],
                  validate: t.Callable[[Flags], list[str]] | None = None,
                  start: t.Callable[[Flags, ApiClient], None] | None = None) -> t.NoReturn:
    """kube-controller-manager, kube-scheduler and cloud-controller-manager: check the configuration, ``start``
    (given the flags and an API client), serve /healthz, lead."""
    flags = parse_command_line(component.command, component.flags, argv)
    check_readable(flags, component.file_flags)
    config = _scheduler_config(flags.string("config")) if flags.string("config") else {}
    election = config.get("leaderElection") or {}
    kubeconfig = (config.get("clientConnection") or {}).get("kubeconfig") or flags.string("kubeconfig")
    errors = validate(flags) if validate else []
    if not kubeconfig:
        errors.append("invalid configuration: no configuration has been provided (--kubeconfig is required by "
                      "the lab stand-in: it runs outside a pod)")

    def setting(flag: str, key: str, default: float) -> float:
        if flag in flags:
            return flags.duration(flag, default)
        return parse_duration(str(election[key])) if election.get(key) else default

    lead = flags.boolean("leader-elect", bool(election.get("leaderElect", True)))
    lease_duration = setting("leader-elect-lease-duration", "leaseDuration", 15.0)
    renew_deadline = setting("leader-elect-renew-deadline", "renewDeadline", 10.0)
    retry_period = setting("leader-elect-retry-period", "retryPeriod", 2.0)
    lock = flags.string("leader-elect-resource-lock", election.get("resourceLock") or "leases")
    name = flags.string("leader-elect-resource-name", election.get("resourceName") or component.command)
    namespace = flags.string("leader-elect-resource-namespace", election.get("resourceNamespace") or "kube-system")
    if lead:
        errors.extend(LeaderElector.validate(lease_duration, renew_deadline, retry_period))
        if lock != "leases":
            errors.append('--leader-elect-resource-lock "%s": only "leases" is supported' % lock)
    port = flags.integer("secure-port", component.secure_port)
    if not 0 <= port < 65536:
        errors.append("--secure-port %d must be between 0 and 65535, inclusive. 0 for turning off secure port"
                      % port)
    if errors:
        fail("[%s]" % ", ".join(errors) if len(errors) > 1 else errors[0])
    check_ip("bind-address", flags)
    check_key_pair("tls-cert-file", "tls-private-key-file", flags)
    for flag in ("client-ca-file", "requestheader-client-ca-file"):
        check_ca_file(flag, flags)
    try:
        settings = load_kubeconfig(kubeconfig)
        for extra in ("authentication-kubeconfig", "authorization-kubeconfig"):
            if flags.string(extra):
                load_kubeconfig(flags.string(extra))
        client = ApiClient.from_kubeconfig(settings, server=flags.string("master"), timeout=renew_deadline)
    except (ConfigError, OSError, ssl.SSLError, ValueError) as exc:
        fail("invalid kubeconfig: %s" % exc)
    if start:
        start(flags, client)

    LOG.info_s("Starting", component=component.command, version=GIT_VERSION)
    LOG.info("%s lab stand-in: NOT Kubernetes; it runs no controllers and schedules nothing" % component.command)
    identity = "%s_%s" % (socket.gethostname(), uuid.uuid4())
    elector = LeaderElector(client, namespace, name, identity, lease_duration, renew_deadline, retry_period)
    if port:
        _serve_health(flags, settings, port, elector if lead else None)

    def stop(signum: int, _frame: t.Any) -> None:
        LOG.info_s("Received signal, exiting", signal=signal.Signals(signum).name)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not lead:
        LOG.info("leader election is disabled (--leader-elect=false)")
        while True:
            _sleep(3600)
    elector.acquire()
    elector.renew()
    LOG.error_s(component.lost_message)
    sys.exit(1)


def _serve_health(flags: Flags, settings: dict[str, t.Any], port: int, elector: LeaderElector | None) -> None:
    """HTTPS on --bind-address:--secure-port with --tls-cert-file, or else the kubeconfig's client certificate.

    The real components make a self-signed certificate when given none; the standard library cannot, so
    the stand-ins present the kubeconfig's client certificate (clients of /healthz do not verify it), and
    serve plain HTTP only when the kubeconfig has no client certificate either.
    """
    host = flags.string("bind-address", "0.0.0.0") or "0.0.0.0"
    tls: ServingCert | None
    if flags.string("tls-cert-file"):
        tls = ServingCert(flags.string("tls-cert-file"), flags.string("tls-private-key-file"))
    elif settings.get("client-certificate") or settings.get("client-certificate-data"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        load_key_pair(context, settings.get("client-certificate") or "", settings.get("client-key") or "",
                      settings.get("client-certificate-data") or "", settings.get("client-key-data") or "")
        tls = ServingCert("", "", static=context)
    else:
        LOG.warning("no serving certificate and no client certificate in the kubeconfig: serving plain HTTP")
        tls = None
    ComponentHandler.elector = elector
    try:
        server = TlsServer((host, port), ComponentHandler, tls)
    except OSError as exc:
        fail("failed to listen on %s:%d: %s" % (host, port, exc))
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    LOG.info("Serving %s on %s" % ("securely" if tls else "insecurely (plain HTTP)",
                                   ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)))
