# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import typing as t

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
_SPEC = importlib.util.spec_from_file_location("awx_surveys", ROOT / "scripts" / "awx_surveys.py")
assert _SPEC is not None and _SPEC.loader is not None
awx_surveys = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(awx_surveys)

# What AWX's survey_spec endpoint accepts (awx/api/views JobTemplateSurveySpec._validate_spec_data): the Python type
# of a default per question type, an empty string being no default.
DEFAULT_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str, "integer": int, "float": float}


def awx_errors(survey: dict[str, t.Any]) -> list[str]:
    """What AWX would refuse in a survey spec, one message per problem."""
    errors = ["%s is not a string" % key for key in ("name", "description") if not isinstance(survey.get(key), str)]
    if not isinstance(survey.get("spec"), list) or not survey["spec"]:
        return errors + ["spec is not a list of questions"]
    seen: set[str] = set()
    for index, item in enumerate(survey["spec"]):
        where = "question %s (%s)" % (index, item.get("variable"))
        errors += ["%s: %s is not a string" % (where, key) for key in ("type", "question_name", "variable") if not isinstance(item.get(key), str)]
        errors += ["%s: required is not a boolean" % where] if not isinstance(item.get("required"), bool) else []
        errors += ["%s: the variable is asked twice" % where] if item.get("variable") in seen else []
        seen.add(item.get("variable"))
        kind = item.get("type")
        if kind not in DEFAULT_TYPES:
            errors.append("%s: %s is not a question type" % (where, kind))
            continue
        default = item.get("default", "")
        # bool is an int to Python, never to AWX's JSON.
        if default != "" and (not isinstance(default, DEFAULT_TYPES[kind]) or isinstance(default, bool)):
            errors.append("%s: the default %r is not a %s" % (where, default, DEFAULT_TYPES[kind].__name__))
        errors += ["%s: %s is not an integer" % (where, key) for key in ("min", "max") if key in item and not isinstance(item[key], int)]
        if kind in ("multiplechoice", "multiselect"):
            if not isinstance(item.get("choices"), list) or not item["choices"]:
                errors.append("%s: no choices" % where)
                continue
            defaults = [line for line in default.splitlines() if line.strip()]
            errors += ["%s: a single choice has one default" % where] if kind == "multiplechoice" and len(defaults) > 1 else []
            errors += ["%s: the default %r is not a choice" % (where, line) for line in defaults if line not in item["choices"]]
    return errors


def by_variable(survey: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    return {item["variable"]: item for item in survey["spec"]}


def write(root: pathlib.Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_every_playbook_has_a_survey_that_awx_accepts():
    files = awx_surveys.rendered(ROOT)
    playbooks = sorted(path.stem for path in (ROOT / "playbooks").glob("*.yml"))
    assert sorted(path.stem for path in files) == playbooks
    assert "status" in playbooks
    for path, text in files.items():
        assert text.endswith("}\n")
        survey = json.loads(text)
        assert survey["name"] == "kubeha.gce." + path.stem
        assert not awx_errors(survey), (path, awx_errors(survey))


def test_the_checker_finds_what_awx_refuses():
    bad = {"name": "x", "description": "", "spec": [
        {"type": "integer", "question_name": "n", "variable": "n", "required": False, "default": "5", "min": ""},
        {"type": "multiplechoice", "question_name": "c", "variable": "n", "required": "no", "choices": ["a"], "default": "b"},
    ]}
    assert awx_errors(bad) == [
        "question 0 (n): the default '5' is not a int", "question 0 (n): min is not an integer",
        "question 1 (n): required is not a boolean", "question 1 (n): the variable is asked twice",
        "question 1 (n): the default 'b' is not a choice",
    ]


def test_a_question_asks_for_the_short_name_a_user_passes_with_e():
    replicate = by_variable(json.loads(awx_surveys.rendered(ROOT)[pathlib.Path("extensions/awx/surveys/replicate.json")]))
    assert replicate["zone"]["required"] is True and "default" not in replicate["zone"]
    assert replicate["cluster_name"]["default"] == "kubernetes"
    assert replicate["allow_even"] == {
        "choices": ["true", "false"], "default": "false", "question_description": replicate["allow_even"]["question_description"],
        "question_name": "Allow an even number of replicas, which survives no more failures than one fewer",
        "required": False, "type": "multiplechoice", "variable": "allow_even"}
    assert replicate["lock_timeout"]["type"] == "integer" and replicate["lock_timeout"]["default"] == 600
    assert not {"kubeha_zone", "kubeha_cluster_name", "kubeha_lock_holder", "etcd_quorum_read", "kubeha_labels",
                "kubeha_kubernetes_binaries_sha256"} & set(replicate)
    # Required questions first, then by variable.
    assert list(replicate)[0] == "zone" and list(replicate)[1:] == sorted(list(replicate)[1:])


def test_site_settings_are_left_to_the_inventory_but_where_a_run_chooses_them():
    surveys = {path.stem: by_variable(json.loads(text)) for path, text in awx_surveys.rendered(ROOT).items()}
    site = {"kubeha_network", "kubeha_subnetwork", "kubeha_ssh_user", "kubeha_ssh_public_key", "kubeha_tags", "kubeha_image",
            "kubeha_machine_type", "kubernetes_version", "etcd_version", "etcd_events", "kubernetes_server_archive_checksum",
            "etcd_snapshot_keep", "status_ssh_timeout"}
    for name, questions in surveys.items():
        asked = site & set(questions)
        assert asked == {"upgrade": {"kubernetes_version"}, "bootstrap": {"etcd_events"}}.get(name, set()), name
    upgrade = surveys["upgrade"]
    assert upgrade["kubernetes_version"]["required"] is True and "default" not in upgrade["kubernetes_version"]
    assert surveys["bootstrap"]["etcd_events"]["default"] == "false"
    assert surveys["rotate_certs"]["certificates"]["default"] == "all"
    assert "default" not in surveys["rotate_certs"]["authorities"]


def test_the_extra_variable_is_the_one_whose_value_becomes_the_option():
    read = awx_surveys.extra_variable
    assert read("{{ zone | default('') }}") == ("zone", [])
    assert read("{{ multizone | default(true) | bool }}") == ("multizone", ["bool"])
    assert read("{{ 'v' ~ (kubernetes_version | default('v1.36.0', true) | string | trim) }}") == ("kubernetes_version", ["trim", "string"])
    assert read("{{ hostvars[inventory_hostname]['etcd_version'] | default('3.4.23', true) | string }}") == ("etcd_version", ["string"])
    assert read("{{ ('awx job ' ~ awx_job_id ~ ' by ' ~ (awx_user_name | default('x'))) if awx_job_id is defined else '' }}") is None
    assert read("{{ lookup('ansible.builtin.env', 'HOME') }}/.kube") is None


def test_each_option_type_becomes_the_question_awx_passes_the_right_value_for():
    def asked(spec, option="kubeha_x"):
        return awx_surveys.question(option, spec, "x", bool(spec.get("required")), {"kubeha_y": "y"})

    assert asked({"type": "int", "default": 5, "description": "Seconds. More."}) == {
        "question_name": "Seconds", "question_description": "Seconds. More.", "variable": "x", "required": False,
        "type": "integer", "min": 0, "max": 2**31 - 1, "default": 5}
    text = asked({"type": "str", "default": "", "required": True, "description": ["The C(thing) (C(x)).", "See O(kubeha_y)."]})
    assert text["question_description"] == "The thing (x). See y." and text["question_name"] == "The thing"
    assert text["type"] == "text" and text["required"] is True and "default" not in text
    listed = asked({"type": "list", "elements": "str", "default": ["a", "b"], "description": "Tags."})
    assert listed["type"] == "text" and listed["default"] == "a,b"
    assert listed["question_description"] == "Tags. Several are given comma-separated, with no spaces."
    several = asked({"type": "list", "elements": "str", "choices": ["a", "b", "c"], "default": ["a", "c"]})
    assert several["type"] == "multiselect" and several["default"] == "a\nc" and several["choices"] == ["a", "b", "c"]
    secret = asked({"type": "str", "no_log": True, "description": "A token."})
    assert secret["type"] == "password" and "default" not in secret
    assert asked({"type": "bool", "default": True})["default"] == "true"
    with pytest.raises(awx_surveys.SurveyError, match="option kubeha_x is of type float"):
        asked({"type": "float"})


def test_a_boolean_the_role_does_not_convert_is_refused(tmp_path):
    write(tmp_path, "roles/kubeha/defaults/main.yml", "kubeha_flag: \"{{ flag | default(false) }}\"\n")
    write(tmp_path, "roles/x/meta/argument_specs.yml",
          "argument_specs:\n  main:\n    options:\n      kubeha_flag:\n        type: bool\n        default: false\n")
    with pytest.raises(awx_surveys.SurveyError, match="option kubeha_flag of x is a boolean .* would be true"):
        awx_surveys.survey(tmp_path, "x", "x")


def test_a_playbook_of_several_roles_or_a_role_without_a_spec_is_named(tmp_path):
    write(tmp_path, "playbooks/two.yml", "- hosts: localhost\n  roles: [kubeha.gce.a, {role: kubeha.gce.b}]\n")
    with pytest.raises(awx_surveys.SurveyError, match="two.yml runs 2 roles \\(a, b\\)"):
        awx_surveys.rendered(tmp_path)
    write(tmp_path, "playbooks/two.yml", "- hosts: localhost\n  roles: [kubeha.gce.a]\n")
    with pytest.raises(awx_surveys.SurveyError, match="a, which playbooks/two.yml runs, has no argument spec"):
        awx_surveys.rendered(tmp_path)


def test_check_changes_nothing_and_names_each_stale_survey(tmp_path):
    for part in ("playbooks", "roles"):
        shutil.copytree(ROOT / part, tmp_path / part)
    assert len(awx_surveys.update(tmp_path, check=False)) == len(list((ROOT / "playbooks").glob("*.yml")))
    assert not awx_surveys.update(tmp_path, check=True)
    surveys = tmp_path / "extensions" / "awx" / "surveys"
    (surveys / "status.json").write_text("{}\n", encoding="utf-8")
    (surveys / "gone.json").write_text("{}\n", encoding="utf-8")
    assert awx_surveys.update(tmp_path, check=True) == ["extensions/awx/surveys/status.json", "extensions/awx/surveys/gone.json"]
    assert (surveys / "status.json").read_text(encoding="utf-8") == "{}\n" and (surveys / "gone.json").exists()
    awx_surveys.update(tmp_path, check=False)
    assert not (surveys / "gone.json").exists()
    assert (surveys / "status.json").read_text(encoding="utf-8") == (ROOT / "extensions/awx/surveys/status.json").read_text(encoding="utf-8")
