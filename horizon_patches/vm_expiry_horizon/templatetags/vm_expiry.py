"""Template helpers for the instance overview's expiry section."""

from __future__ import annotations

from typing import Any

from django import template

from vm_expiry_horizon import customization
from vm_expiry_horizon.display import ExpiryView
from vm_expiry_horizon.tables import instance_expiry

register = template.Library()


@register.filter
def vm_expiry(instance: Any) -> ExpiryView | None:
    """``{% with instance|vm_expiry as expiry %}``: None when the pack does not manage it."""
    return instance_expiry(instance)


@register.simple_tag
def vm_expiry_base_overview() -> str:
    """The overview template ours wraps (Horizon's own unless an operator replaced it)."""
    return customization.base_overview_template
