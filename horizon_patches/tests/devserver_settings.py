"""Settings for a Horizon dev server wired to a lab, for the browser end-to-end test.

Horizon's production settings with this plugin enabled (as its enabled file does) and Keystone
taken from the environment::

    cd horizon_patches && VM_EXPIRY_KEYSTONE_URL=http://127.0.0.1:5000/v3 PYTHONPATH=tests \\
        ../.venv-horizon/bin/django-admin runserver --insecure \\
        --settings devserver_settings 127.0.0.1:8080

``--insecure`` serves static files with DEBUG off. The instance detail page needs a network
(neutron) endpoint in the catalog, or it answers 500.
"""

import os

from openstack_dashboard.settings import *  # noqa: F403

from vm_expiry_horizon.enabled import _9090_vm_expiry as enabled_file

OPENSTACK_KEYSTONE_URL = os.environ.get("VM_EXPIRY_KEYSTONE_URL", "http://127.0.0.1:5000/v3")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# Horizon defaults to memcached; one dev server process keeps its sessions in memory.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
INSTALLED_APPS = [*enabled_file.ADD_INSTALLED_APPS, *INSTALLED_APPS]  # noqa: F405
HORIZON_CONFIG.update(enabled_file.UPDATE_HORIZON_CONFIG)  # noqa: F405
# A lab's Mistral on 2 cores may take a few seconds for a prolong.
VM_EXPIRY_PROLONG_WAIT = float(os.environ.get("VM_EXPIRY_PROLONG_WAIT", "10"))
