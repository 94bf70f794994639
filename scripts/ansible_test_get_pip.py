# kubeha-gce get-pip stand-in (scripts/test.sh copies this file into the
# ansible-test cache as ~/.ansible/test/cache/get_pip_<version>.py).
"""Offline replacement for the get-pip.py script that ansible-test downloads.

``ansible-test ... --venv`` creates each virtual environment without pip, then
runs the cached get-pip script with ``runpy`` and arguments such as
``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``.

This script installs the pip wheel bundled with the interpreter (ensurepip),
then installs the requested packages from the configured package index, and
removes setuptools again when ``--no-setuptools`` was asked for, so the result
matches what the real get-pip script produces.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel')


def run(command: list[str], quiet: bool = False) -> None:
    """Run a command, showing its output only when it fails if quiet."""
    if not quiet:
        subprocess.run(command, check=True)
        return

    result = subprocess.run(command, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    if result.returncode != 0:
        sys.stderr.write(result.stdout)
        raise SystemExit(result.returncode)


def main() -> None:
    """Install pip and the requested packages into the running interpreter."""
    args = sys.argv[1:]
    pip_args = [arg for arg in args if arg not in GET_PIP_ONLY_OPTIONS]
    requested = [arg.split('=')[0].split('<')[0].split('>')[0].lower() for arg in pip_args if not arg.startswith('-')]

    run([sys.executable, '-m', 'ensurepip'], quiet=True)
    run([sys.executable, '-m', 'pip', 'install', '--quiet'] + pip_args)

    if '--no-setuptools' in args and 'setuptools' not in requested:
        run([sys.executable, '-m', 'pip', 'uninstall', '--quiet', '--yes', 'setuptools'], quiet=True)


if __name__ == '__main__':
    main()
