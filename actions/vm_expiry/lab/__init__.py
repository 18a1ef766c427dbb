"""The local lab: real Keystone, Nova, RabbitMQ, Mistral and an SMTP sink on 127.0.0.1.

Python API (the CLI, the tests and the demo use the same)::

    from vm_expiry.lab import up, down, load_info, restart_mistral
    info = up(".lab")              # idempotent; returns lab.json as a dict
    info["admin"]                  # keystoneauth/openstacksdk ``auth`` block (also
    info["service_user"]           #   clouds lab-admin / lab-vm-expiry in info["clouds_yaml"])
    info["nova_url"], info["mistral_url"], info["keystone_url"], info["seed_url"]
    info["maildir"], info["image_id"], info["flavor_id"], info["config_path"]
    restart_mistral(".lab")        # e.g. after a fault test
    down(".lab")                   # returns the PIDs still alive (an empty list)

Layout of the lab's folder: ``venvs/`` (openstack = Keystone + Nova, mistral = Mistral + the
pack), ``logs/<service>.log``, ``run/<service>.pid``, ``maildir/``, one folder per service's
state, ``lab.json``, ``clouds.yaml`` and ``vm-expiry.yaml`` (the pack's configuration, written
only if missing; Mistral runs with ``VM_EXPIRY_CONFIG`` pointing at it).
"""

from vm_expiry.lab.lifecycle import down, restart_mistral, status, up
from vm_expiry.lab.settings import LabInfo, load_info

__all__ = ["LabInfo", "down", "load_info", "restart_mistral", "status", "up"]
