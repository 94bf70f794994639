# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check that the execution environment's build context installs what the collection needs, at the tested versions.

Run it as python3 scripts/check_ee.py --context DIR --collections DIR --tarball FILE after
`ansible-builder create -f extensions/awx/execution-environment.yml --context DIR` (make build does). ansible-builder
reads the Python and system requirements of the collections it installs only while the image is built, inside it:
this runs the introspection script of the context on the collection installed from the same tarball (--collections,
the directory holding ansible_collections/), with the arguments the Containerfile gives it, and checks its output:
every requirement of requirements.txt is pinned to the version in tests/constraints.txt (and the pin fits the
collection's range), every entry of bindep.txt is there, ansible-core and ansible-runner are pinned as
tests/constraints.txt pins them, and the collection installed is the tarball of galaxy.yml's version.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile
import typing as t

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "tests" / "constraints.txt"
REQUIREMENTS = ROOT / "requirements.txt"
BINDEP = ROOT / "bindep.txt"
GALAXY = ROOT / "galaxy.yml"
# The packages that ansible-builder installs before anything else (ARG ANSIBLE_INSTALL_REFS).
ANSIBLE_PACKAGES = ("ansible-core", "ansible-runner")
# introspect.py writes each requirement as "LINE  # from collection SOURCES": the collections that ask for it and "user"
# for the definition's own, comma-separated when several ask for the very same line.
SOURCE = re.compile(r"^(?P<line>.*?)\s+# from collection (?P<source>.+?)\s*$")


class EEError(Exception):
    """The build context cannot be checked: a file is missing or not as ansible-builder writes it."""


@dataclasses.dataclass(frozen=True)
class Introspected:
    """What the image's build would install: Python requirement lines and bindep lines, each with its source."""

    python: list[tuple[str, frozenset[str]]]
    system: list[tuple[str, frozenset[str]]]


def requirement_lines(path: pathlib.Path) -> list[str]:
    """The lines of a requirements or bindep file, without comments and blank lines."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def constraints(path: pathlib.Path) -> dict[str, str]:
    """tests/constraints.txt as {canonical name: version}."""
    pins = {}
    for line in requirement_lines(path):
        name, sep, version = line.partition("==")
        if not sep:
            raise EEError("%s: %r is not an exact pin (NAME==VERSION)" % (path, line))
        pins[canonicalize_name(name)] = version.strip()
    return pins


def instruction_file(context: pathlib.Path) -> pathlib.Path:
    """The Containerfile (podman) or Dockerfile (docker) that ansible-builder create wrote."""
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context / name
    raise EEError("%s holds neither a Containerfile nor a Dockerfile: was ansible-builder create run into it?" % context)


def build_args(text: str) -> dict[str, str]:
    """The ARG defaults at the head of the instruction file (ARG NAME="VALUE")."""
    return dict(re.findall(r'^ARG (\w+)="(.*)"$', text, flags=re.MULTILINE))


def introspect_arguments(text: str) -> list[str]:
    """The arguments the builder stage gives introspect.py, less the files it writes (this check writes its own)."""
    for line in text.splitlines():
        if "introspect.py" not in line:
            continue
        words = shlex.split(line)
        if words[:1] == ["RUN"] and "/output/scripts/introspect.py" in words and "introspect" in words:
            rest = words[words.index("introspect") + 1:]
            return [word for word in rest if not word.startswith(("--write-pip", "--write-bindep"))]
    raise EEError("the instruction file runs no introspection of the collections (introspect.py introspect)")


def sourced(lines: list[str]) -> list[tuple[str, frozenset[str]]]:
    """Split introspect.py's lines into (requirement, the sources that ask for it)."""
    result = []
    for line in lines:
        match = SOURCE.match(line)
        sources = frozenset(part.strip() for part in match.group("source").split(",")) if match else frozenset()
        result.append((match.group("line").strip() if match else line.strip(), sources))
    return result


def introspect(context: pathlib.Path, collections: pathlib.Path, arguments: list[str]) -> Introspected:
    """Run the context's own introspect.py on the installed collection, as the image's builder stage runs it."""
    script = context / "_build" / "scripts" / "introspect.py"
    if not script.is_file():
        raise EEError("%s is missing: the build context is incomplete" % script)
    with tempfile.TemporaryDirectory() as scratch:
        pip_out, bindep_out = pathlib.Path(scratch, "requirements.txt"), pathlib.Path(scratch, "bindep.txt")
        command = [sys.executable, str(script), "introspect", str(collections), *arguments,
                   "--write-pip=%s" % pip_out, "--write-bindep=%s" % bindep_out]
        # The build runs it in /build, where the context's _build files were copied.
        done = subprocess.run(command, cwd=context / "_build", capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EEError("introspect.py failed (%d): %s" % (done.returncode, (done.stderr or done.stdout).strip()))
        read = [path.read_text(encoding="utf-8").splitlines() if path.exists() else [] for path in (pip_out, bindep_out)]
    return Introspected(python=sourced([line for line in read[0] if line.strip()]),
                        system=sourced([line for line in read[1] if line.strip()]))


def parsed(line: str) -> Requirement | None:
    try:
        return Requirement(line)
    except InvalidRequirement:
        return None


def exact_pin(requirement: Requirement) -> str | None:
    """The version of a NAME==VERSION requirement, None for any other."""
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator == "==":
        return specs[0].version
    return None


def pin_problem(name: str, pinned: str | None, tested: dict[str, str]) -> str | None:
    """What is wrong with the execution environment's pin of ``name``, or None."""
    wanted = tested.get(canonicalize_name(name))
    if wanted is None:
        return "%s: tests/constraints.txt has no version of it, so the execution environment's pin is untested" % name
    if pinned is None:
        return "%s: the execution environment does not pin it; tests/constraints.txt pins ==%s" % (name, wanted)
    if pinned != wanted:
        return "%s: the execution environment pins ==%s, tests/constraints.txt pins ==%s" % (name, pinned, wanted)
    return None


def ansible_problems(args: dict[str, str], tested: dict[str, str]) -> list[str]:
    """ansible-core and ansible-runner, as the base stage installs them."""
    refs = {}
    for word in args.get("ANSIBLE_INSTALL_REFS", "").split():
        requirement = parsed(word)
        if requirement is not None:
            refs[canonicalize_name(requirement.name)] = exact_pin(requirement)
    return [problem for problem in (pin_problem(name, refs.get(name), tested) for name in ANSIBLE_PACKAGES) if problem]


def python_problems(found: Introspected, collection: str, tested: dict[str, str]) -> list[str]:
    """Each requirement of requirements.txt: read from the collection, pinned as tested, the pin in its range."""
    problems: dict[str, None] = {}  # in order, once each
    pins: dict[str, str] = {}
    from_collection = set()
    for line, source in found.python:
        requirement = parsed(line)
        if requirement is None:
            problems["the image would install %r (from %s), which is no requirement pip can check"
                     % (line, ", ".join(sorted(source)))] = None
            continue
        if collection in source:
            from_collection.add(canonicalize_name(requirement.name))
        if source and source <= {collection}:
            continue
        if exact_pin(requirement) is None:
            problems["%s: the execution environment asks for %r, not an exact pin" % (requirement.name, line)] = None
        else:
            pins[canonicalize_name(requirement.name)] = exact_pin(requirement) or ""
            problems[pin_problem(requirement.name, exact_pin(requirement), tested) or ""] = None
    for line in requirement_lines(REQUIREMENTS):
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        if name not in from_collection:
            problems["%s: in requirements.txt, but the introspection of the installed %s does not list it" % (wanted.name, collection)] = None
        problems[pin_problem(wanted.name, pins.get(name), tested) or ""] = None
        if name in pins and not wanted.specifier.contains(pins[name], prereleases=True):
            problems["%s: the execution environment pins ==%s, outside requirements.txt's %s" % (wanted.name, pins[name], wanted.specifier)] = None
    return [problem for problem in problems if problem]


def system_problems(found: Introspected) -> list[str]:
    """Each entry of bindep.txt, as the image's bindep run would read it."""
    listed = {" ".join(line.split()) for line, unused_source in found.system}
    return ["bindep.txt: %r is not among the system packages of the image" % line
            for line in requirement_lines(BINDEP) if " ".join(line.split()) not in listed]


def collection_problems(context: pathlib.Path, tarball: pathlib.Path) -> list[str]:
    """The galaxy requirement names the tarball of galaxy.yml's version, and the context holds that very tarball."""
    galaxy = yaml.safe_load(GALAXY.read_text(encoding="utf-8"))
    expected = "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"])
    requirements = context / "_build" / "requirements.yml"
    if not requirements.is_file():
        return ["%s is missing: the execution environment installs no collection" % requirements]
    entries = (yaml.safe_load(requirements.read_text(encoding="utf-8")) or {}).get("collections") or []
    files = [entry["name"] for entry in entries if isinstance(entry, dict) and entry.get("type") == "file"]
    if len(files) != 1:
        return ["the execution environment installs %d collection tarballs, not this collection's one: %s" % (len(files), files)]
    if pathlib.PurePosixPath(files[0]).name != expected:
        return ["the execution environment installs %s, but galaxy.yml's version %s builds %s"
                % (pathlib.PurePosixPath(files[0]).name, galaxy["version"], expected)]
    copied = context / "_build" / files[0]
    if not copied.is_file():
        return ["%s is not in the build context: was %s at the checkout's root when it was created?" % (files[0], expected)]
    if copied.read_bytes() != tarball.read_bytes():
        return ["%s in the build context is not %s, the tarball just built" % (copied, tarball)]
    return []


def check(context: pathlib.Path, collections: pathlib.Path, tarball: pathlib.Path) -> tuple[list[str], str]:
    """The problems found, and a one-line account of what the image would hold."""
    text = instruction_file(context).read_text(encoding="utf-8")
    args = build_args(text)
    tested = constraints(CONSTRAINTS)
    galaxy = yaml.safe_load(GALAXY.read_text(encoding="utf-8"))
    collection = "%s.%s" % (galaxy["namespace"], galaxy["name"])
    found = introspect(context, collections, introspect_arguments(text))
    problems = ansible_problems(args, tested) + python_problems(found, collection, tested)
    problems += system_problems(found) + collection_problems(context, tarball)
    pins = sorted(line for line, source in found.python if "user" in source)
    summary = "base image %s, Python %s, %s; Python: %s; system: %s" % (
        args.get("EE_BASE_IMAGE"), args.get("PYCMD"), args.get("ANSIBLE_INSTALL_REFS"), ", ".join(pins),
        ", ".join(line for line, unused_source in found.system))
    return problems, summary


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", required=True, type=pathlib.Path, help="the directory ansible-builder create wrote")
    parser.add_argument("--collections", required=True, type=pathlib.Path,
                        help="a directory holding ansible_collections/ with the collection installed from --tarball")
    parser.add_argument("--tarball", required=True, type=pathlib.Path, help="the collection tarball the context was created with")
    args = parser.parse_args(argv)
    try:
        problems, summary = check(args.context.resolve(), args.collections.resolve(), args.tarball.resolve())
    except (EEError, OSError, yaml.YAMLError) as exc:
        print("check_ee: %s" % exc, file=sys.stderr)
        return 2
    for problem in problems:
        print("execution environment: %s" % problem, file=sys.stderr)
    if problems:
        print("execution environment: %d problem(s); its pins in extensions/awx/execution-environment.yml follow tests/constraints.txt"
              " (see docs/execution-environment.md)" % len(problems), file=sys.stderr)
        return 1
    print("execution environment: %s" % summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
