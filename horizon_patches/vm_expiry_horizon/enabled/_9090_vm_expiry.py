"""Horizon "enabled" file: copy it into ``openstack_dashboard/local/enabled/``.

``UPDATE_HORIZON_CONFIG`` replaces the operator's own customization_module, if they have one:
they delete that line here and import ``vm_expiry_horizon.customization`` from their module
instead (see the README). ``ADD_INSTALLED_APPS`` is needed either way, for the templates.
"""

FEATURE = "vm_expiry"
ADD_INSTALLED_APPS = ["vm_expiry_horizon"]
UPDATE_HORIZON_CONFIG = {"customization_module": "vm_expiry_horizon.customization"}
