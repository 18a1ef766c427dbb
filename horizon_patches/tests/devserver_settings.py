"""Settings for a Horizon dev server wired to a lab, for the browser end-to-end test.

Horizon's production settings with this plugin enabled (as its enabled file does) and Keystone
taken from the environment::

    cd horizon_patches && VM_EXPIRY_KEYSTONE_URL=http://127.0.0.1:5000/v3 PYTHONPATH=tests \\
        ../.venv-horizon/bin/django-admin runserver --insecure \\
        --settings devserver_settings 127.0.0.1:8080

``--insecure`` serves static files with DEBUG off; ``VM_EXPIRY_HORIZON_DEBUG=1`` turns DEBUG
and console logging on. The lab's catalog has identity, compute and workflowv2 only. Two things
broke Horizon against it, both fixed here without touching Horizon:

- ``/project/`` (the Overview's usage charts) answered 500: ``ServiceCatalogException: Invalid
  service catalog: network``, from ``usage.views._check_network_allowed`` ->
  ``neutron.is_quotas_extension_supported``, which asks neutron whenever ``enable_quotas`` is on
  (the default). ``OPENSTACK_NEUTRON_NETWORK`` below turns off every neutron feature Horizon probes
  by configuration.
- ``/project/instances/`` answered "Bad Request (400)": ``SessionInterrupted: The request's
  session was deleted before the request completed``. Horizon keeps sessions in the ``default``
  cache; in a LocMemCache with its default 300 entries, the cache entries written while rendering
  a page (compressor's per-file mtimes, ...) culled the logged-in session itself. Sessions now have
  their own cache.
- the instance page answered 500 (``KeyError: 'tab_group'``): its Interfaces tab builds
  ``ports.tables.PortsTable``, whose constructor asks neutron for extensions unconditionally;
  the ``ServiceCatalogException`` is swallowed by ``TabView`` and the missing tab group then
  fails. A compute policy override (``devserver_policy/no-network.yaml``) hides that tab.
"""

import os

from openstack_dashboard.settings import *  # noqa: F403

from vm_expiry_horizon.enabled import _9090_vm_expiry as enabled_file

OPENSTACK_KEYSTONE_URL = os.environ.get("VM_EXPIRY_KEYSTONE_URL", "http://127.0.0.1:5000/v3")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# Horizon defaults to memcached; one dev server process keeps its sessions in memory.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 100000},
    },
    "sessions": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "sessions",
        "OPTIONS": {"MAX_ENTRIES": 100000},
    },
}
SESSION_CACHE_ALIAS = "sessions"
# No network (neutron) endpoint in the lab: turn off what Horizon would ask neutron about.
OPENSTACK_NEUTRON_NETWORK = {
    **OPENSTACK_NEUTRON_NETWORK,  # noqa: F405
    "enable_quotas": False,
    "enable_router": False,
    "enable_rbac_policy": False,
    "enable_ipv6": False,
    "enable_fip_topology_check": False,
}
# Horizon joins POLICY_DIRS to its conf/ folder; an absolute path stays as it is.
POLICY_DIRS = {
    **POLICY_DIRS,  # noqa: F405
    "compute": [
        *POLICY_DIRS.get("compute", []),  # noqa: F405
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "devserver_policy"),
    ],
}
if os.environ.get("VM_EXPIRY_HORIZON_DEBUG") == "1":
    DEBUG = True
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "root": {"handlers": ["console"], "level": "INFO"},
    }
INSTALLED_APPS = [*enabled_file.ADD_INSTALLED_APPS, *INSTALLED_APPS]  # noqa: F405
HORIZON_CONFIG.update(enabled_file.UPDATE_HORIZON_CONFIG)  # noqa: F405
# A lab's Mistral on 2 cores may take a few seconds for a prolong.
VM_EXPIRY_PROLONG_WAIT = float(os.environ.get("VM_EXPIRY_PROLONG_WAIT", "10"))
