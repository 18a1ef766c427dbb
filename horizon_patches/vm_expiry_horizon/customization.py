"""Adds the vm-expiry column, Prolong action and expiry section to Horizon's instance pages.

Horizon imports this module once as ``HORIZON_CONFIG['customization_module']`` (set by
``enabled/_9090_vm_expiry.py``). An operator with a customization module of their own imports
this one from theirs instead; ``install()`` is idempotent, so being imported both ways is fine.
"""

from __future__ import annotations

import collections

from horizon import tables
from openstack_dashboard.dashboards.admin.instances import tables as admin_tables
from openstack_dashboard.dashboards.project.instances import tables as project_tables
from openstack_dashboard.dashboards.project.instances import tabs as project_tabs

from vm_expiry_horizon.tables import (
    ACTION_NAME,
    COLUMN_NAME,
    ProlongInstance,
    expires_column,
)

OVERVIEW_TEMPLATE = "vm_expiry_horizon/_detail_overview.html"
# The overview template ours includes: whatever was set before us (Horizon's own, or an
# operator's override), recorded by install().
base_overview_template = project_tabs.OverviewTab.template_name


def install() -> None:
    """Patch Horizon's classes in place, once."""
    global base_overview_template
    for table in (project_tables.InstancesTable, admin_tables.AdminInstancesTable):
        _add_column(table)
        _add_action(table)
    # The admin detail page uses the same OverviewTab class.
    if project_tabs.OverviewTab.template_name != OVERVIEW_TEMPLATE:
        base_overview_template = project_tabs.OverviewTab.template_name
        project_tabs.OverviewTab.template_name = OVERVIEW_TEMPLATE


def _add_column(table: type[tables.DataTable]) -> None:
    if COLUMN_NAME in table.base_columns:
        return
    column = expires_column()
    table.base_columns[COLUMN_NAME] = column
    # _columns is what instances copy; the generated "actions" column must stay last.
    columns = [(name, col) for name, col in table._columns.items() if name != "actions"]
    columns.append((COLUMN_NAME, column))
    if "actions" in table._columns:
        columns.append(("actions", table._columns["actions"]))
    table._columns = collections.OrderedDict(columns)


def _add_action(table: type[tables.DataTable]) -> None:
    if ACTION_NAME in table.base_actions:
        return
    table.base_actions[ACTION_NAME] = ProlongInstance()
    # First: it is the call to action a reminder mail leads to, and it is only offered on
    # servers the pack manages.
    table._meta.row_actions = (ProlongInstance, *table._meta.row_actions)


install()
