#!/bin/sh
# The end-to-end browser test (tests/test_browser.py) from a clean machine: installs Debian's
# chromium and chromium-driver when missing (needs root), the Horizon venv with Selenium, and
# runs the test, which brings the lab up if it is not (it never takes it down).
# Logs, and on failure a screenshot and the page, go to build/horizon-browser/.
# Extra arguments go to pytest.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
venv=${VENV_HORIZON:-$repo/.venv-horizon}
python=${PYTHON:-python3}

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "installing Debian's chromium and chromium-driver"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver >/dev/null
fi
# The lab's message broker (as `make system-packages`).
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    echo "installing Debian's rabbitmq-server for the lab"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        rabbitmq-server >/dev/null
fi
if [ ! -x "$venv/bin/pytest" ] || [ ! -f "$venv/.vm-expiry-horizon-browser" ]; then
    test -x "$venv/bin/python" || "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -e "$repo" -e "$here[test,browser]"
    touch "$venv/.vm-expiry-horizon" "$venv/.vm-expiry-horizon-browser"
fi
cd "$here"
exec "$venv/bin/pytest" -q -m browser "$@"
