# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the AWX survey of each public playbook from the argument spec of the role it runs.

Run it as python3 scripts/awx_surveys.py. Each playbooks/NAME.yml runs one role of the collection; the options of
that role's `main` entry point become the questions of extensions/awx/surveys/NAME.json, the body that AWX's
/api/v2/job_templates/ID/survey_spec/ takes. A question asks for the variable a user passes with -e: the short,
kube-up-like name that roles/kubeha/defaults/main.yml (or the role's own defaults) reads the option from, or else
the option's own name. `--check` changes nothing and fails when a file is not as this script would write it
(make lint runs that).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import typing as t

import yaml
from jinja2 import Environment, nodes

ROOT = pathlib.Path(__file__).resolve().parent.parent
SURVEYS = pathlib.Path("extensions") / "awx" / "surveys"
NAMESPACE = "kubeha.gce."

# Options that no survey offers. A survey answer is an extra variable, which beats every other variable of the job,
# so a question is only right for what a user chooses per run:
#  - kubeha_lock_holder names the run that holds the cluster's lock; under AWX the role builds it from awx_job_id and
#    awx_user_name, which AWX gives every job, and a survey answer would replace that with whatever was typed.
#  - kubeha_etcd_quorum_read accepts only its default (true); a question could only offer a way to fail.
# Options of type dict are left out too (no survey question type carries a mapping): set kubeha_labels and
# kubeha_kubernetes_binaries_sha256 in the job template's extra variables.
LEFT_OUT = frozenset({"kubeha_lock_holder", "kubeha_etcd_quorum_read"})

# The settings of the site rather than of a run: where and how the replicas are made and reached, which releases
# and binaries they run, the cluster's addresses and where the controller keeps files. They belong in the
# inventory (or the job template's extra variables), which a survey's answer would override on every launch: AWX
# passes each question's default, and a blank answer as an empty string or null. They are asked only where a run
# chooses them (ASKED_IN).
SITE = frozenset({
    "kubeha_machine_type", "kubeha_image", "kubeha_data_disk_size_gb", "kubeha_data_disk_type", "kubeha_network",
    "kubeha_subnetwork", "kubeha_tags", "kubeha_wait_timeout", "kubeha_ssh_user", "kubeha_ssh_public_key",
    "kubeha_ssh_private_key_file", "kubeha_ssh_common_args", "kubeha_ssh_via", "kubeha_ssh_timeout",
    "kubeha_ssh_source_ranges", "kubeha_etcd_version", "kubeha_etcd_archive_src", "kubeha_etcd_archive_url",
    "kubeha_etcd_archive_sha256", "kubeha_kubernetes_version", "kubeha_kubernetes_server_archive_url",
    "kubeha_kubernetes_server_archive_checksum", "kubeha_kubernetes_cache_dir", "kubeha_kubernetes_binaries_src",
    "kubeha_kubernetes_binaries_url", "kubeha_cloud_controller_url", "kubeha_cloud_controller_checksum",
    "kubeha_cloud_controller_src", "kubeha_addons_src", "kubeha_service_cluster_ip_range", "kubeha_service_ip",
    "kubeha_dns_domain", "kubeha_lb_backend", "kubeha_ca_cert_file", "kubeha_etcd_data_dir", "kubeha_etcd_events",
    "kubeha_etcd_snapshot_dest", "kubeha_etcd_snapshot_keep", "kubeha_lock_ttl", "kubeha_multizone",
    "status_ssh_timeout",
})
# Site settings that a playbook's run chooses, and so asks: the release an upgrade moves to (then set it in the
# inventory too, which the other playbooks read), and whether a new cluster runs the events etcd. An etcd upgrade is
# asked for in the inventory (etcd_version): a blank answer would override it.
ASKED_IN = {
    "upgrade": frozenset({"kubeha_kubernetes_version"}),
    "bootstrap": frozenset({"kubeha_etcd_events"}),
}

# Options that must be answered in one playbook although their spec has a default: upgrade refuses to take the
# collection's default Kubernetes release, which would move a cluster to whatever release that is.
REQUIRED = {"upgrade": frozenset({"kubeha_kubernetes_version"})}

# AWX's own bounds for a new text question (its UI starts each one at 0 and 1024); integers here are counts, sizes
# and seconds, never negative.
TEXT_MAX = 1024
INTEGER_MAX = 2**31 - 1
# A question's name is its label in AWX's forms; a longer first sentence is cut at its first comma or dash.
TITLE_MAX = 100

# Ansible's documentation markup (C(x), O(x), V(x), L(text,url), ...), shown as plain text in AWX.
MARKUP = re.compile(r"\b(RV|[BCEIMOPUV])\(([^()]*)\)|\bL\(([^(),]*),[^()]*\)")


class SurveyError(Exception):
    """A playbook, role or option that no survey can be written for; the message names it."""


def load_yaml(path: pathlib.Path) -> t.Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise SurveyError("%s cannot be read: %s" % (path, error)) from error


def playbook_role(path: pathlib.Path) -> str:
    """The one role of the collection that the playbook at ``path`` runs."""
    roles = []
    for play in load_yaml(path) or []:
        for entry in play.get("roles", []):
            name = entry["role"] if isinstance(entry, dict) else entry
            roles.append(name[len(NAMESPACE):] if name.startswith(NAMESPACE) else name)
    if len(roles) != 1:
        raise SurveyError("%s runs %s roles (%s); a survey is written for a playbook that runs one"
                          % (path, len(roles), ", ".join(roles) or "none"))
    return roles[0]


def extra_variable(template: str) -> tuple[str, list[str]] | None:
    """The extra variable that a default such as ``{{ zone | default('') }}`` reads, and the filters applied to it.

    Only a variable whose value becomes the option (through filters and ``~``) counts; one read in a condition, as
    awx_job_id is in kubeha_lock_holder's default, does not.
    """
    body = Environment().parse(template).body
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None
    return _read(body[0].nodes[0], [])


def _read(node: nodes.Node, above: list[str]) -> tuple[str, list[str]] | None:
    if isinstance(node, nodes.Filter):
        if node.name == "default":
            name = _variable_name(node.node)
            return (name, above) if name else None
        return _read(node.node, above + [node.name])
    if isinstance(node, nodes.Concat):
        found = [read for read in (_read(part, above) for part in node.nodes) if read]
        return found[0] if len(found) == 1 else None
    return None


def _variable_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    # hostvars[inventory_hostname]['etcd_version']: an extra variable, read where a role variable cannot hide it.
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        inner = node.node
        if isinstance(inner, nodes.Getitem) and isinstance(inner.node, nodes.Name) and inner.node.name == "hostvars":
            return node.arg.value
    return None


def short_names(root: pathlib.Path, role: str) -> dict[str, tuple[str, list[str]]]:
    """Each option of ``role`` read from an extra variable, with that variable and the filters applied to it."""
    found = {}
    for path in (root / "roles" / "kubeha" / "defaults" / "main.yml", root / "roles" / role / "defaults" / "main.yml"):
        if not path.exists():
            continue
        for option, value in (load_yaml(path) or {}).items():
            if isinstance(value, str) and "{{" in value:
                read = extra_variable(value)
                if read:
                    found[option] = read
    return found


def plain(text: str | list[str], variables: dict[str, str]) -> str:
    """A description without Ansible's markup, the options it names called by their survey variables."""
    text = " ".join(text) if isinstance(text, list) else text

    def replace(match: re.Match) -> str:
        if match.group(3) is not None:
            return match.group(3)
        return variables.get(match.group(2), match.group(2))

    return " ".join(MARKUP.sub(replace, text).split())


def title(description: str) -> str:
    """The first sentence of a plain description, without what it says in parentheses; when long, up to a comma or dash."""
    while True:
        shorter = re.sub(r"\s*\([^()]*\)", "", description)
        if shorter == description:
            break
        description = shorter
    sentence = re.split(r"[.;:]\s", description + " ", maxsplit=1)[0].strip().rstrip(".")
    return re.split(r",\s|\s-\s", sentence, maxsplit=1)[0] if len(sentence) > TITLE_MAX else sentence


def question(option: str, spec: dict, variable: str, required: bool, variables: dict[str, str]) -> dict[str, t.Any]:
    """The survey question of one option, with the question type and default that AWX accepts for it."""
    kind = spec.get("type", "str")
    description = plain(spec.get("description", ""), variables)
    default = None if required and not spec.get("required") else spec.get("default")
    entry: dict[str, t.Any] = {
        "question_name": title(description) or variable,
        "question_description": description,
        "variable": variable,
        "required": required,
    }
    if spec.get("no_log") and kind in ("str", "path"):
        entry.update(type="password", min=0, max=TEXT_MAX)
        entry.update({"default": default} if default else {})
    elif "choices" in spec:
        choices = [str(choice) for choice in spec["choices"]]
        if kind == "list":
            # AWX takes a multiselect default as one string, its choices one a line; the job gets a list.
            entry.update(type="multiselect", choices=choices, default="\n".join(str(item) for item in default or []))
        else:
            # An empty default is none: AWX leaves out an answer that is not one of the choices.
            entry.update(type="multiplechoice", choices=choices, default="" if default is None else str(default))
    elif kind == "bool":
        entry.update(type="multiplechoice", choices=["true", "false"], default="" if default is None else str(bool(default)).lower())
    elif kind == "int":
        entry.update(type="integer", min=min(0, default if isinstance(default, int) else 0), max=INTEGER_MAX)
        entry.update({"default": default} if isinstance(default, int) else {})
    elif kind in ("str", "path"):
        entry.update(type="text", min=0, max=TEXT_MAX)
        entry.update({"default": str(default)} if default not in (None, "") else {})
    elif kind == "list":
        # Ansible turns "a,b" into a list where a module or argument spec takes one, splitting at each comma only,
        # so " b" would keep its space; the roles that say "comma-separated" in the description trim each item.
        if "comma" not in description:
            entry["question_description"] = description + " Several are given comma-separated, with no spaces."
        entry.update(type="text", min=0, max=TEXT_MAX)
        entry.update({"default": ",".join(str(item) for item in default)} if default else {})
    else:
        raise SurveyError("option %s is of type %s, which no survey question carries" % (option, kind))
    return entry


def survey(root: pathlib.Path, playbook: str, role: str) -> dict[str, t.Any]:
    """The survey of ``playbook``, from the `main` entry point of ``role``."""
    path = root / "roles" / role / "meta" / "argument_specs.yml"
    if not path.exists():
        raise SurveyError("%s, which playbooks/%s.yml runs, has no argument spec (%s)" % (role, playbook, path))
    main = ((load_yaml(path) or {}).get("argument_specs") or {}).get("main")
    if not main:
        raise SurveyError("%s has no entry point main" % path)
    reads = short_names(root, role)
    asked = ASKED_IN.get(playbook, frozenset())
    options = {name: spec for name, spec in (main.get("options") or {}).items()
               if name not in LEFT_OUT and (name not in SITE or name in asked) and spec.get("type", "str") != "dict"}
    variables = {name: reads[name][0] if name in reads else name for name in options}
    for name, spec in options.items():
        # AWX passes a choice as a string: "false" is true to a condition unless the role turns it into a boolean.
        if spec.get("type") == "bool" and "bool" not in (reads[name][1] if name in reads else []):
            raise SurveyError("option %s of %s is a boolean that the role does not read through the bool filter, "
                              "so the survey's answer \"false\" would be true" % (name, role))
    must = REQUIRED.get(playbook, frozenset())
    questions = [question(name, spec, variables[name], bool(spec.get("required")) or name in must, variables)
                 for name, spec in options.items()]
    questions.sort(key=lambda entry: (not entry["required"], entry["variable"]))
    return {"name": NAMESPACE + playbook, "description": plain(main.get("short_description", ""), variables), "spec": questions}


def rendered(root: pathlib.Path) -> dict[pathlib.Path, str]:
    """Each survey file, relative to ``root``, with its text."""
    files = {}
    for path in sorted((root / "playbooks").glob("*.yml")):
        data = survey(root, path.stem, playbook_role(path))
        files[SURVEYS / (path.stem + ".json")] = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return files


def update(root: pathlib.Path, check: bool) -> list[str]:
    """Write the surveys under ``root`` (nothing with ``check``); the files that were, or would be, changed."""
    files = rendered(root)
    stale = []
    for relative, text in files.items():
        path = root / relative
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(str(relative))
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    # A survey whose playbook is gone.
    for path in sorted((root / SURVEYS).glob("*.json")):
        if path.relative_to(root) not in files:
            stale.append(str(path.relative_to(root)))
            if not check:
                path.unlink()
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail when a survey is out of date")
    args = parser.parse_args()
    try:
        stale = update(ROOT, args.check)
    except SurveyError as error:
        print("scripts/awx_surveys.py: %s" % error, file=sys.stderr)
        return 2
    if args.check and stale:
        print("not as scripts/awx_surveys.py writes them from the roles' argument specs: %s; run scripts/awx_surveys.py"
              % ", ".join(stale), file=sys.stderr)
        return 1
    for path in stale:
        print("wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
