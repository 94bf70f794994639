# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The files a role writes on a replica with kubeha.gce.replica_files: which ones the pki role's material makes, and
which of them differ from what kubeha.gce.replica_files_info read."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError


def _text(value: t.Any) -> str:
    return value if isinstance(value, str) else ""


def replica_pki_files(material: t.Mapping[str, t.Any], layout: t.Mapping[str, t.Any]) -> list[dict[str, str]]:
    """The CA material, certificates, keys and kubeconfigs of one replica as files (path, content, mode), from the
    pki role's material and its layout (dir, kubeconfig_dir, ca_paths, leaf_paths, kubeconfigs; skip_leaves, the
    certificates another role writes; create_only_ca_paths, CA files another role owns once it runs, written here
    only when missing, with force false, so that the CA material is whole from the first run on; signer_paths, the
    file of each CA's signing certificate alone, from the material's signers). An optional CA part (a CA's next key,
    held during a rotation) is listed only when the material has it. A kubeconfig not
    made yet (check mode) is listed, empty, only when its certificate changes, so that it is predicted to change
    exactly then. Paths are the directory, a slash and the relative path, as the role reads them."""
    try:
        directory, kubeconfig_dir = layout["dir"], layout["kubeconfig_dir"]
        ca, leaves = material.get("ca") or {}, material.get("leaves") or {}
        kubeconfigs, changed = material.get("kubeconfigs") or {}, material.get("changed_leaves") or []
        files = []
        for entry in layout["ca_paths"]:
            item = {"path": "%s/%s" % (directory, entry["path"]),
                    "content": _text((ca.get(entry["ca"]) or {}).get(entry["part"])),
                    "mode": "0644" if entry["part"] in ("cert", "public") else "0600"}
            if entry.get("optional") and not item["content"]:
                continue
            if entry["path"] in layout.get("create_only_ca_paths", []):
                item["force"] = False
            files.append(item)
        signers = material.get("signers") or {}
        for name, path in (layout.get("signer_paths") or {}).items():
            if signers.get(name):
                files.append({"path": "%s/%s" % (directory, path), "content": _text(signers[name]), "mode": "0644"})
        for name, stem in layout["leaf_paths"].items():
            if name in layout.get("skip_leaves", []):
                continue
            for part, extension, mode in (("cert", "crt", "0644"), ("key", "key", "0600")):
                files.append({"path": "%s/%s.%s" % (directory, stem, extension),
                              "content": _text((leaves.get(name) or {}).get(part)), "mode": mode})
        for name in layout.get("kubeconfigs", []):
            if name in kubeconfigs or name in changed:
                files.append({"path": "%s/%s.conf" % (kubeconfig_dir, name),
                              "content": _text(kubeconfigs.get(name)), "mode": "0600"})
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("replica_pki_files: the material or the layout is not as the pki role makes it: %r"
                                 % exc) from exc
    return files


def ca_material(files: t.Mapping[str, t.Mapping[str, t.Any]], ca_paths: t.Sequence[t.Mapping[str, str]],
                directory: str) -> dict[str, dict[str, str]]:
    """The CA material (CA name -> part -> PEM) in the files read from a replica (kubeha.gce.replica_files_info's
    ``files``), by the pki role's ca_paths (ca, part, path under ``directory``); a file not read is left out."""
    material: dict[str, dict[str, str]] = {}
    try:
        for entry in ca_paths:
            found = files.get("%s/%s" % (directory, entry["path"]))
            if found is not None:
                material.setdefault(entry["ca"], {})[entry["part"]] = _text(found.get("content"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("ca_material: the files or the CA paths are not as the pki role reads them: %r" % exc) from exc
    return material


def files_to_write(wanted: t.Sequence[t.Mapping[str, t.Any]], current: t.Mapping[str, t.Mapping[str, t.Any]],
                   uid: int = 0, gid: int = 0) -> list[t.Mapping[str, t.Any]]:
    """The wanted files (path, content, mode, force) whose content, mode or owner differs from what was read (the files
    of kubeha.gce.replica_files_info, with their content): the ones a replica_files task has to write. One with force
    false differs only when it is missing."""
    differing = []
    for entry in wanted:
        if not isinstance(entry, t.Mapping) or "path" not in entry:
            raise AnsibleFilterError("files_to_write: each wanted file needs a path, got %r" % (entry,))
        found = current.get(entry["path"])
        if found and entry.get("force") is False:
            continue
        want = (_text(entry.get("content")), str(entry.get("mode") or "0600").zfill(4), uid, gid)
        if not found or (found.get("content"), found.get("mode"), found.get("uid"), found.get("gid")) != want:
            differing.append(entry)
    return differing


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"replica_pki_files": replica_pki_files, "files_to_write": files_to_write, "ca_material": ca_material}
