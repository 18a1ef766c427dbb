#!/bin/sh
# Runs the Horizon plugin's tests in their own venv (Horizon pins its own Django and clients),
# creating it first if missing. Extra arguments go to pytest.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
venv=${VENV_HORIZON:-$repo/.venv-horizon}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/pytest" ] || [ ! -f "$venv/.vm-expiry-horizon" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -e "$repo" -e "$here[test]"
    touch "$venv/.vm-expiry-horizon"
fi
cd "$here"
exec "$venv/bin/pytest" -q "$@"
