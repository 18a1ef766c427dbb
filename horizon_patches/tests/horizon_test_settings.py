"""Horizon's own test settings plus this plugin, applied the way an enabled file applies it."""

from openstack_dashboard.test.settings import *  # noqa: F403

from vm_expiry_horizon.enabled import _9090_vm_expiry as enabled_file

INSTALLED_APPS = [*enabled_file.ADD_INSTALLED_APPS, *INSTALLED_APPS]  # noqa: F405
HORIZON_CONFIG.update(enabled_file.UPDATE_HORIZON_CONFIG)  # noqa: F405
