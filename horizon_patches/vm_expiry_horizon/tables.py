"""The "Expires" column and the "Prolong" row action for Horizon's Instances tables."""

from __future__ import annotations

import logging
from typing import Any

from django import shortcuts
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from horizon import messages, tables
from mistralclient.api.base import APIException

from vm_expiry_horizon import prolong
from vm_expiry_horizon.display import ExpiryView, expiry_view, format_moment, until

LOG = logging.getLogger(__name__)
COLUMN_NAME = "vm_expiry"
ACTION_NAME = "vm_expiry_prolong"
_ERROR_LIMIT = 500


def instance_expiry(instance: Any) -> ExpiryView | None:
    """The expiry of a Horizon ``api.nova.Server``; None when the pack does not manage it."""
    return expiry_view(getattr(instance, "metadata", None))


def render_expires(instance: Any) -> SafeString | str:
    """The column cell: a label styled by state; empty for servers without expiry."""
    view = instance_expiry(instance)
    if view is None:
        return ""
    return format_html('<span class="{}" data-vm-expiry-phase="{}" title="{}">{}</span>',
                       view.css_class, view.phase, view.state_text, view.summary)


def expires_column() -> tables.Column:
    """A new "Expires" column, named as the table metaclass would have named it."""
    column = tables.Column(render_expires, verbose_name=gettext_lazy("Expires"),
                           empty_value="", sortable=False)
    column.name = COLUMN_NAME
    column.classes.append("normal_column")
    return column


class ProlongInstance(tables.Action):
    """Ask Mistral to prolong one server, as the logged-in user."""

    name = ACTION_NAME
    verbose_name = gettext_lazy("Prolong")
    icon = "clock-o"
    # Handled before the table loads its data: only the id is needed, and the detail page
    # posts here for servers that may not be on the current page of the table.
    preempt = True

    def allowed(self, request: HttpRequest, instance: Any = None) -> bool:
        view = instance_expiry(instance)
        return view is not None and view.prolongable

    def single(self, data_table: tables.DataTable, request: HttpRequest,
               object_id: str) -> HttpResponse:
        try:
            result = prolong.prolong(request, object_id)
        except APIException as exc:
            LOG.warning("Mistral refused to prolong %s: %s", object_id, exc.error_message)
            messages.error(request, _("Could not prolong the instance: %(reason)s") % {
                "reason": exc.error_message or exc.error_code})
        except Exception as exc:
            # Mistral is an optional service next to Nova: whatever goes wrong reaching it
            # (no endpoint, connection refused, bad answer) must not turn into a 500.
            LOG.warning("Could not reach Mistral to prolong %s", object_id, exc_info=True)
            messages.error(request, _("Could not reach the workflow service to prolong the "
                                      "instance: %(reason)s") % {"reason": exc})
        else:
            _report(request, result)
        return shortcuts.redirect(_back_url(request))


def _report(request: HttpRequest, result: prolong.ProlongResult) -> None:
    if result.state == "SUCCESS" and result.expire_at is not None:
        messages.success(request, _("Prolonged: the instance now expires on %(date)s "
                                    "(%(left)s).") % {
            "date": format_moment(result.expire_at), "left": until(result.expire_at)})
    elif result.state == "SUCCESS":
        messages.success(request, _("Prolonged (execution %(id)s).") % {
            "id": result.execution_id})
    elif result.state in prolong.FINISHED:
        messages.error(request, _("Could not prolong the instance: %(reason)s") % {
            "reason": result.error[:_ERROR_LIMIT] or result.state})
    else:
        messages.info(request, _("Prolong requested; it is still running (workflow execution "
                                 "%(id)s). Reload the page in a moment to see the new date.")
                      % {"id": result.execution_id})


def _back_url(request: HttpRequest) -> str:
    """Where the user pressed the button: the detail page posts to the table's URL."""
    referer = request.META.get("HTTP_REFERER", "")
    if referer and url_has_allowed_host_and_scheme(
            referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return referer
    return request.get_full_path()
