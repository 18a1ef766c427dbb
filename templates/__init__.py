"""The packaged mail templates (``*.j2``); see README.md here for their variables.

This file only makes the folder importable as ``vm_expiry.templates`` so that
``importlib.resources`` finds the templates in every kind of install.
"""
