# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the options that several lifecycle roles share into their argument specs.

Run it as python3 scripts/role_specs.py. Each shared option (cluster, VM, binaries, SSH settings...) is described once, in
roles/kubeha/meta/shared_options.yml, with the roles that read it. This script writes it into the `main`
entry point of each of those roles' meta/argument_specs.yml, between two marker comments; what a role
alone reads is written in its own file, above the markers. `--check` changes nothing and fails when a
file is not as this script would write it (make lint runs that).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import typing as t

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT / "roles" / "kubeha" / "meta" / "shared_options.yml"
INDENT = " " * 6
BEGIN = INDENT + "# -- shared with other lifecycle roles: written by scripts/role_specs.py from roles/kubeha/meta/shared_options.yml\n"
END = INDENT + "# -- end of the shared options\n"


class Dumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
    """Lists indented under their key, as ansible-lint's yaml rule wants them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dumped(value: t.Any) -> str:
    return yaml.dump(value, Dumper=Dumper, sort_keys=False, width=120, default_flow_style=False, allow_unicode=True)


def rendered(role: str, shared: dict) -> str:
    """The shared options of ``role``, as they stand between the markers."""
    options = {name: option["spec"] for name, option in shared.items() if role in option["roles"]}
    text = dumped(options)
    return "".join(INDENT + line if line.strip() else line for line in text.splitlines(True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail when a file is out of date")
    args = parser.parse_args()
    shared = yaml.safe_load(SHARED.read_text(encoding="utf-8"))
    roles = sorted({role for option in shared.values() for role in option["roles"]})
    stale = []
    for role in roles:
        path = ROOT / "roles" / role / "meta" / "argument_specs.yml"
        text = path.read_text(encoding="utf-8")
        if text.count(BEGIN) != 1 or text.count(END) != 1:
            print("%s: the marker lines of the shared options are missing (or there are several)" % path, file=sys.stderr)
            return 2
        head, rest = text.split(BEGIN)
        tail = rest.split(END)[1]
        wanted = head + BEGIN + rendered(role, shared) + END + tail
        if wanted == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not args.check:
            path.write_text(wanted, encoding="utf-8")
    if args.check and stale:
        print("not as scripts/role_specs.py writes them from %s: %s; run scripts/role_specs.py"
              % (SHARED.relative_to(ROOT), ", ".join(stale)), file=sys.stderr)
        return 1
    for path in stale:
        print("wrote the shared options of %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
