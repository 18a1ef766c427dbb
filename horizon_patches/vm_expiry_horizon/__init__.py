"""Horizon plugin for vm-expiry: expiry column, expiry on the instance page, Prolong action."""
