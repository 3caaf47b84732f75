#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: 2026 emqx-relup developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible module emqx_release: a release of an EMQX host in a state,
through emqx-relup's machine-readable answers (--dry-run --json, --json)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: emqx_release
short_description: Put an EMQX release in a state with emqx-relup (hot upgrade, downgrade, removal)
version_added: 1.0.0
description:
  - Puts release O(version) of the EMQX broker of a host in O(state) with the
    C(emqx-relup) helper, which moves the running broker to another patch
    release without closing a connection (every established session moves
    to the new release's process).
  - Asks the helper for its plan first (C(--dry-run --json)); C(changed) is
    true only when a release or its state changes. In check mode that plan
    is all that runs, and nothing on the host changes.
  - Fails with the helper's one-line reason, and its exit class, when the
    helper refuses (another major.minor, the wrong direction, the release
    running) or the switch fails; a failed switch leaves the old broker
    serving.
author:
  - emqx-relup developers (@emqx-relup)
requirements:
  - emqx-relup 0.1.0 or later on the managed host (its C(--dry-run) and C(--json)).
options:
  version:
    description:
      - The release, a semantic version such as C(5.0.1).
    type: str
    required: true
  state:
    description:
      - C(permanent) switches the running broker to the release (up or
        down, unpacking its package if needed) and makes it what a restart
        runs (C(emqx-relup install)).
      - C(current) switches to it but keeps the permanent release, so a
        restart goes back (C(install --no-permanent)); needs a running broker.
      - C(unpacked) only extracts the package into the store, if the release
        is not known yet (C(unpack)).
      - C(absent) removes an old or unpacked release (C(uninstall)); the
        running or permanent release is refused.
    type: str
    choices: [unpacked, current, permanent, absent]
    default: permanent
  src:
    description:
      - A release package on the managed host (C(emqx-VSN.zip) or
        C(emqx-VSN.tar.gz), with its optional C(.sha256) beside it) to place
        into the drop folder C(ROOT_DIR/releases/) before anything else, when
        the drop folder does not hold the same bytes yet.
      - Without it, the package must be in the drop folder already (copied
        there, or by the C(emqx-release-VSN) OS package).
    type: path
  root_dir:
    description:
      - The install dir (C(--root)); the helper's default is C(/usr/lib/emqx).
    type: path
  state_dir:
    description:
      - Where the release store is (C(--state-dir)); the default is C(/var/lib/emqx).
    type: path
  config:
    description:
      - The helper's configuration file (C(--config)); the default is
        C(/etc/emqx/relup.toml) when it exists.
    type: path
  helper:
    description:
      - The helper to run.
    type: path
    default: emqx-relup
attributes:
  check_mode:
    support: full
    description: Runs only the helper's dry run, which changes nothing.
  diff_mode:
    support: full
    description: The releases and their states before and after.
notes:
  - The helper's exit classes are documented in its manual
    (docs/operating.md, "Exit codes").
seealso:
  - module: emqx.relup.mqtt_probe
"""

EXAMPLES = r"""
- name: Hot-upgrade the broker to 5.0.1 and make it permanent
  emqx.relup.emqx_release:
    version: 5.0.1
    src: /var/tmp/emqx-5.0.1.tar.gz

- name: Try 5.0.2 on the running broker; a restart goes back
  emqx.relup.emqx_release:
    version: 5.0.2
    state: current

- name: Remove the old release
  emqx.relup.emqx_release:
    version: 5.0.0
    state: absent
"""

RETURN = r"""
version:
  description: The release asked for.
  returned: always
  type: str
  sample: 5.0.1
plan:
  description: The steps the helper planned (unpack, switch, make_permanent, remove), each with its release.
  returned: always
  type: list
  elements: dict
  sample: [{"step": "switch", "version": "5.0.1", "from": "5.0.0"}]
lines:
  description: The helper's transcript (as planned in check mode).
  returned: always
  type: list
  elements: str
  sample: ["Installed Release: 5.0.1", "Made release permanent: \"5.0.1\""]
releases:
  description: The releases and their states after the task, newest first.
  returned: always
  type: list
  elements: dict
  sample: [{"version": "5.0.1", "state": "permanent"}, {"version": "5.0.0", "state": "old"}]
from_release:
  description: The release the broker ran before the switch.
  returned: when the broker was switched
  type: str
  sample: 5.0.0
to_release:
  description: The release it runs after it.
  returned: when the broker was switched
  type: str
  sample: 5.0.1
sessions_moved:
  description: Established connections moved with their sessions to the new release's process.
  returned: when the broker was switched
  type: int
  sample: 1000
pause_ms:
  description: How long those connections were frozen, in milliseconds.
  returned: when connections moved
  type: float
  sample: 2.4
connections_draining:
  description: Connections left to drain in the old broker (not moved).
  returned: when the broker was switched
  type: int
  sample: 0
drain_reason:
  description: Why connections drained instead of moving, when they did.
  returned: when the broker was switched
  type: str
switch:
  description: Every figure the helper reported of the switch (its C(--json) answer's C(switch)).
  returned: when the broker was switched
  type: dict
package_placed:
  description: The path O(src) was placed at in the drop folder (or would be, in check mode).
  returned: when O(src) was given and the drop folder lacked it
  type: str
helper_exit:
  description: The helper's exit code and class when it refused or failed.
  returned: failure
  type: dict
  sample: {"code": 3, "class": "refused"}
"""

import json
import os
import shutil

from ansible.module_utils.basic import AnsibleModule

# docs/operating.md, "Exit codes".
EXIT_CLASSES = {
    1: "system",
    2: "usage",
    3: "refused",
    4: "package",
    5: "switch_failed",
    6: "busy",
}

COMMANDS = {
    "permanent": ["install"],
    "current": ["install", "--no-permanent"],
    "absent": ["uninstall"],
}


def helper_base(module):
    """The helper with the layout options given."""
    p = module.params
    cmd = [p["helper"]]
    for flag, key in (("--root", "root_dir"), ("--state-dir", "state_dir"), ("--config", "config")):
        if p[key]:
            cmd += [flag, p[key]]
    return cmd


def run_helper(module, args, result):
    """Runs the helper; on failure ends the task with its one-line reason."""
    rc, out, err = module.run_command(helper_base(module) + args)
    if rc != 0:
        reason = err.strip() or out.strip() or "no output"
        module.fail_json(
            msg="emqx-relup %s: %s" % (" ".join(args), reason),
            helper_exit={"code": rc, "class": EXIT_CLASSES.get(rc, "unknown")},
            **result
        )
    return out


def run_json(module, args, result):
    """Runs the helper and parses its one JSON answer."""
    out = run_helper(module, args, result)
    try:
        return json.loads(out)
    except ValueError:
        module.fail_json(msg="emqx-relup %s did not answer in JSON: %s" % (" ".join(args), out[:200]), **result)


def drop_dir(module):
    """The drop folder (ROOT_DIR/releases), as the helper reports it."""
    out = run_helper(module, ["root_dir"], {})
    return os.path.join(out.strip().strip('"'), "releases")


def place_package(module, result):
    """Copies src (and its .sha256) into the drop folder unless the same
    bytes are there; returns whether it is (or would be) placed anew."""
    src = module.params["src"]
    if not os.path.isfile(src):
        module.fail_json(msg="src %s is not a file on this host" % src, **result)
    dest = os.path.join(drop_dir(module), os.path.basename(src))
    pairs = [(src, dest)]
    if os.path.isfile(src + ".sha256"):
        pairs.append((src + ".sha256", dest + ".sha256"))
    stale = [(s, d) for s, d in pairs if not os.path.isfile(d) or module.sha256(s) != module.sha256(d)]
    if not stale:
        return False
    result["package_placed"] = dest
    if module.check_mode:
        return True
    for s, d in stale:
        tmp = d + ".ansible-tmp"
        shutil.copyfile(s, tmp)
        os.chmod(tmp, 0o644)
        module.atomic_move(tmp, d)
    return True


def states_text(entries):
    return "".join("%s %s\n" % (e["version"], e["state"]) for e in entries)


def unpack(module, result):
    """state=unpacked: extract the package if the release is not known."""
    known = run_json(module, ["versions", "--json"], result)["releases"]
    result["releases"] = known
    if any(e["version"] == module.params["version"] for e in known):
        return False
    result["plan"] = [{"step": "unpack", "version": module.params["version"]}]
    if module.check_mode:
        return True
    out = run_helper(module, ["unpack", module.params["version"]], result)
    result["lines"] = out.splitlines()
    result["releases"] = run_json(module, ["versions", "--json"], result)["releases"]
    return True


def switched(result, answer):
    """Copies what the switch measured into the result."""
    switch = answer.get("switch")
    if not switch:
        return
    result.update(
        switch=switch,
        from_release=switch.get("from"),
        to_release=switch.get("to"),
        sessions_moved=switch.get("moved") or 0,
        pause_ms=switch.get("pause_ms"),
        connections_draining=switch.get("draining"),
        drain_reason=switch.get("drain_reason"),
    )


def change(module, result):
    """permanent, current, absent: the helper's plan, then (unless check
    mode) the command itself. Returns whether a release state changed."""
    version = module.params["version"]
    cmd = COMMANDS[module.params["state"]]
    plan = run_json(module, cmd + ["--dry-run", "--json", version], result)
    result.update(plan=plan["steps"], lines=plan["lines"], releases=plan["after"])
    if module._diff:
        result["diff"] = {"before": states_text(plan["before"]), "after": states_text(plan["after"])}
    if module.check_mode or not plan["changed"]:
        return plan["changed"]
    answer = run_json(module, cmd + ["--json", version], result)
    result.update(lines=answer["lines"], releases=answer["after"])
    switched(result, answer)
    return answer["changed"]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            version=dict(type="str", required=True),
            state=dict(type="str", default="permanent", choices=["unpacked", "current", "permanent", "absent"]),
            src=dict(type="path"),
            root_dir=dict(type="path"),
            state_dir=dict(type="path"),
            config=dict(type="path"),
            helper=dict(type="path", default="emqx-relup"),
        ),
        supports_check_mode=True,
    )
    result = dict(changed=False, version=module.params["version"], plan=[], lines=[], releases=[])
    placed = False
    if module.params["src"] and module.params["state"] != "absent":
        placed = place_package(module, result)
    if placed and module.check_mode:
        # The helper cannot plan with a package it does not see yet.
        result.update(changed=True, msg="would place %s, then plan with it" % result["package_placed"])
        module.exit_json(**result)
    if module.params["state"] == "unpacked":
        changed = unpack(module, result)
    else:
        changed = change(module, result)
    result["changed"] = bool(changed or placed)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
