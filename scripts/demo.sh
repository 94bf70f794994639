#!/usr/bin/env bash
# The main job on the built-in default, the lab: bring the lab up and run the
# collection against it. The lab stays up afterwards so it can be looked at.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lab="$root/tests/lab/lab"
"$lab" up
"$lab" exec -- ansible-playbook "$root/tests/lab/demo/replica.yml"
cat <<MSG

The lab is still up. Look around:
  tests/lab/lab status                   instances, addresses, forwarding rules
  tests/lab/lab exec -- ansible-playbook ...   run your own playbooks against it
  tests/lab/lab shell                    a shell with the lab's environment
Tear it down:
  tests/lab/lab down
MSG
