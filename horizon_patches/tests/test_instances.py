"""The plugin inside Horizon's instance pages, with Horizon's own test framework and data."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from unittest import mock

import requests
from django.contrib.messages.storage import default_storage
from django.core.handlers import wsgi
from django.test.utils import override_settings
from django.urls import reverse
from mistralclient.api.base import APIException
from openstack_dashboard import api
from openstack_dashboard.dashboards.project.instances import tables as project_tables
from openstack_dashboard.dashboards.project.instances import tabs as project_tabs
from openstack_dashboard.test import helpers

from vm_expiry.timeutil import format_time
from vm_expiry_horizon import customization, prolong

INDEX_URL = reverse("horizon:project:instances:index")
ADMIN_INDEX_URL = reverse("horizon:admin:instances:index")
MISTRAL_URL = "http://public.mistral.example.com:8989/v2"
PROLONG = "instances__vm_expiry_prolong__%s"


def _in(days: float) -> str:
    """A metadata time ``days`` from now (an extra hour keeps "in N days" exact)."""
    return format_time(datetime.now(timezone.utc) + timedelta(days=days, hours=1))


def _ago(days: float) -> str:
    return format_time(datetime.now(timezone.utc) - timedelta(days=days, hours=1))


class PluginTestCase(helpers.TestCase):
    def _setup_test_data(self):
        super()._setup_test_data()
        # A cloud running the pack registers Mistral in the catalog.
        self.service_catalog.append({
            "type": "workflowv2", "name": "mistral", "endpoints_links": [],
            "endpoints": [{"region": region, "interface": "public", "url": MISTRAL_URL}
                          for region in ("RegionOne", "RegionTwo")],
        })

    def set_metadata(self, server, metadata):
        server.metadata = metadata
        return server

    def messages(self):
        """(level, text) of the messages queued for the next page."""
        temp = self.client.request(**{"wsgi.input": wsgi.LimitedStream(io.BytesIO(), 2)})
        temp.COOKIES = self.client.cookies
        if "messages" not in self.client.cookies:
            return []
        decoded = default_storage(temp)._decode(self.client.cookies["messages"].value)
        return [(m.level_tag, str(m.message)) for m in decoded or []]


class InstancesTableTests(PluginTestCase):
    # The same API calls upstream's InstanceTableTests._get_index mocks.
    @helpers.create_mocks({
        api.nova: ("flavor_list", "server_list_paged", "tenant_absolute_limits",
                   "is_feature_available"),
        api.glance: ("image_list_detailed",),
        api.neutron: ("floating_ip_simple_associate_supported", "floating_ip_supported"),
        api.network: ("servers_update_addresses",),
        api.cinder: ("volume_list",),
    }, stop_mock=False)
    def get_index(self, servers):
        self.mock_is_feature_available.return_value = True
        self.mock_flavor_list.return_value = self.flavors.list()
        self.mock_image_list_detailed.return_value = (self.images.list(), False, False)
        self.mock_server_list_paged.return_value = [servers, False, False]
        self.mock_servers_update_addresses.return_value = None
        self.mock_tenant_absolute_limits.return_value = self.limits["absolute"]
        self.mock_floating_ip_supported.return_value = True
        self.mock_floating_ip_simple_associate_supported.return_value = True
        res = self.client.get(INDEX_URL)
        self.assertEqual(200, res.status_code)
        return res

    def servers_in_all_states(self):
        fine, reminded, expired, exempt, unmanaged = self.servers.list()[:5]
        self.set_metadata(fine, {"expire_at": _in(12), "expire_state": "active"})
        self.set_metadata(reminded, {"expire_at": _in(6), "expire_state": "reminded-7"})
        self.set_metadata(expired, {"expire_at": _ago(3), "expire_state": "expired",
                                    "expire_delete_at": _in(11)})
        self.set_metadata(exempt, {"expire_at": "never", "expire_state": "exempt"})
        self.set_metadata(unmanaged, {"owner": "someone"})
        return fine, reminded, expired, exempt, unmanaged

    def cell(self, res, server):
        table = res.context["instances_table"]
        row = table.get_rows()[[r.datum.id for r in table.get_rows()].index(server.id)]
        return str(row.cells["vm_expiry"].value)

    def test_column_shows_date_time_left_and_state_class(self):
        fine, reminded, expired, exempt, unmanaged = self.servers_in_all_states()
        res = self.get_index([fine, reminded, expired, exempt, unmanaged])

        self.assertContains(res, "Expires")
        cell = self.cell(res, fine)
        self.assertIn(fine.metadata["expire_at"][:10], cell)
        self.assertIn("(in 12 days)", cell)
        self.assertIn("vm-expiry-fine", cell)
        self.assertIn("label-success", cell)
        self.assertIn("(in 6 days)", self.cell(res, reminded))
        self.assertIn("vm-expiry-reminded", self.cell(res, reminded))
        self.assertIn("(expired 3 days ago)", self.cell(res, expired))
        self.assertIn("vm-expiry-expired", self.cell(res, expired))
        self.assertIn("label-danger", self.cell(res, expired))
        self.assertIn(">never<", self.cell(res, exempt))
        self.assertIn("vm-expiry-exempt", self.cell(res, exempt))
        self.assertEqual("", self.cell(res, unmanaged))

    def test_column_sits_before_the_actions(self):
        res = self.get_index(self.servers.list())
        names = list(res.context["instances_table"].columns)
        self.assertEqual(["vm_expiry", "actions"], names[-2:])

    def test_prolong_offered_only_where_the_pack_manages_the_server(self):
        fine, reminded, expired, exempt, unmanaged = self.servers_in_all_states()
        res = self.get_index([fine, reminded, expired, exempt, unmanaged])
        content = res.content.decode()
        for server in (fine, reminded, expired):
            self.assertIn(PROLONG % server.id, content)
        for server in (exempt, unmanaged):
            self.assertNotIn(PROLONG % server.id, content)

    def test_install_is_idempotent(self):
        customization.install()
        customization.install()
        table = project_tables.InstancesTable
        self.assertEqual(1, list(table._columns).count("vm_expiry"))
        self.assertEqual(1, [a.name for a in table._meta.row_actions].count(
            "vm_expiry_prolong"))
        self.assertEqual(customization.OVERVIEW_TEMPLATE, project_tabs.OverviewTab.template_name)
        self.assertEqual("project/instances/_detail_overview.html",
                         customization.base_overview_template)


class AdminInstancesTableTests(PluginTestCase, helpers.BaseAdminViewTests):
    # The same API calls upstream's admin InstanceViewTest.test_index mocks.
    @helpers.create_mocks({
        api.nova: ["flavor_list", "server_list_paged"],
        api.keystone: ["tenant_list"],
        api.glance: ["image_list_detailed"],
        api.cinder: ["volume_list"],
    })
    def test_admin_table_has_the_column(self):
        servers = self.servers.list()
        self.set_metadata(servers[0], {"expire_at": _in(12), "expire_state": "active"})
        self.mock_tenant_list.return_value = [self.tenants.list(), False]
        self.mock_image_list_detailed.return_value = [[]]
        self.mock_flavor_list.return_value = self.flavors.list()
        self.mock_server_list_paged.return_value = [servers, False, False]
        self.mock_volume_list.return_value = self.cinder_volumes.list()

        res = self.client.get(ADMIN_INDEX_URL)

        self.assertEqual(200, res.status_code)
        self.assertEqual("vm_expiry", list(res.context["table"].columns)[-2])
        self.assertContains(res, "(in 12 days)", 1)
        self.assertContains(res, "vm-expiry-fine", 1)
        self.assertContains(res, PROLONG % servers[0].id)
        self.assertNotContains(res, PROLONG % servers[1].id)


class InstanceDetailTests(PluginTestCase):
    # The same API calls upstream's InstanceDetailTests._get_instance_details mocks.
    @helpers.create_mocks({
        api.nova: ("server_get", "instance_volumes_list", "flavor_get", "flavor_list",
                   "is_feature_available"),
        api.neutron: ("server_security_groups", "floating_ip_simple_associate_supported",
                      "floating_ip_supported", "is_extension_supported"),
        api.network: ("servers_update_addresses",),
    })
    def get_detail(self, server):
        self.mock_server_get.return_value = server
        self.mock_servers_update_addresses.return_value = None
        self.mock_instance_volumes_list.return_value = []
        self.mock_flavor_get.return_value = self.flavors.first()
        self.mock_server_security_groups.return_value = self.security_groups.list()
        self.mock_floating_ip_simple_associate_supported.return_value = True
        self.mock_floating_ip_supported.return_value = True
        self.mock_is_feature_available.return_value = True
        self.mock_is_extension_supported.return_value = False
        res = self.client.get(reverse("horizon:project:instances:detail", args=[server.id]))
        self.assertEqual(200, res.status_code)
        return res

    def test_detail_shows_expiry_state_and_deletion_date(self):
        server = self.set_metadata(self.servers.first(), {
            "expire_at": _ago(3), "expire_state": "expired", "expire_delete_at": _in(11)})

        res = self.get_detail(server)

        self.assertContains(res, "Expiry state")
        self.assertContains(res, server.metadata["expire_at"][:10])
        self.assertContains(res, "(expired 3 days ago)")
        self.assertContains(res, "Expired: locked and shut down")
        self.assertContains(res, "Deleted on")
        self.assertContains(res, server.metadata["expire_delete_at"][:10] + " ")
        self.assertContains(res, "(in 11 days) unless prolonged")
        # Horizon's own overview is still there, below ours.
        self.assertContains(res, "Specs")
        self.assertContains(res, PROLONG % server.id)

    def test_detail_of_an_unmanaged_server_has_no_expiry(self):
        res = self.get_detail(self.servers.first())

        self.assertNotContains(res, "Expiry state")
        self.assertNotContains(res, PROLONG % self.servers.first().id)
        self.assertContains(res, "Specs")


def execution(state, output=None, state_info=None, id_="ex-1"):
    return mock.Mock(id=id_, state=state, state_info=state_info,
                     output=json.dumps(output or {}))


@mock.patch.object(prolong, "POLL_INTERVAL", 0.01)
@mock.patch("mistralclient.api.client.client")
class ProlongActionTests(PluginTestCase):
    def post_prolong(self, server_id="server-1", **extra):
        return self.client.post(INDEX_URL, {"action": PROLONG % server_id}, **extra)

    def test_mistral_called_with_the_users_token_and_project(self, client):
        new_date = _in(30)
        client.return_value.executions.create.return_value = execution(
            "SUCCESS", {"expire_at": new_date})

        res = self.post_prolong()

        self.assertRedirectsNoFollow(res, INDEX_URL)
        client.assert_called_once_with(auth_token=self.token.id, project_id=self.tenant.id,
                                       mistral_url=MISTRAL_URL, insecure=False, cacert=None)
        client.return_value.executions.create.assert_called_once_with(
            "vm_expiry.prolong", workflow_input={"server": "server-1"})
        [(level, text)] = self.messages()
        self.assertEqual("success", level)
        self.assertIn(new_date[:10], text)
        self.assertIn("in 30 days", text)

    def test_polls_until_the_execution_finishes(self, client):
        executions = client.return_value.executions
        executions.create.return_value = execution("RUNNING")
        executions.get.side_effect = [execution("RUNNING"),
                                      execution("SUCCESS", {"expire_at": _in(30)})]

        self.post_prolong()

        self.assertEqual([mock.call("ex-1")] * 2, executions.get.call_args_list)
        self.assertEqual("success", self.messages()[0][0])

    def test_failed_execution_shows_mistrals_error(self, client):
        reason = "vm_expiry.prolong refused: server-1 would pass its maximum lifetime"
        client.return_value.executions.create.return_value = execution(
            "RUNNING", state_info=None)
        client.return_value.executions.get.return_value = execution("ERROR", state_info=reason)

        self.post_prolong()

        [(level, text)] = self.messages()
        self.assertEqual("error", level)
        self.assertIn(reason, text)

    @override_settings(VM_EXPIRY_PROLONG_WAIT=0)
    def test_still_running_shows_the_execution_id(self, client):
        client.return_value.executions.create.return_value = execution("RUNNING", id_="ex-42")

        self.post_prolong()

        [(level, text)] = self.messages()
        self.assertEqual("info", level)
        self.assertIn("ex-42", text)

    def test_unreachable_mistral_is_an_error_message_not_a_500(self, client):
        client.return_value.executions.create.side_effect = requests.ConnectionError(
            "Connection refused")

        res = self.post_prolong()

        self.assertRedirectsNoFollow(res, INDEX_URL)
        [(level, text)] = self.messages()
        self.assertEqual("error", level)
        self.assertIn("Connection refused", text)

    def test_refused_by_mistral_is_an_error_message(self, client):
        client.return_value.executions.create.side_effect = APIException(
            403, "Workflow not found or not allowed")

        res = self.post_prolong()

        self.assertRedirectsNoFollow(res, INDEX_URL)
        [(level, text)] = self.messages()
        self.assertEqual("error", level)
        self.assertIn("not allowed", text)

    def test_no_workflow_endpoint_is_an_error_message(self, client):
        self.service_catalog.pop()  # no workflowv2 entry
        self.setActiveUser(id=self.user.id, token=self.token, username=self.user.name,
                           tenant_id=self.tenant.id, service_catalog=self.service_catalog,
                           authorized_tenants=self.tenants.list())

        res = self.post_prolong()

        self.assertRedirectsNoFollow(res, INDEX_URL)
        client.assert_not_called()
        self.assertEqual("error", self.messages()[0][0])

    def test_returns_to_the_detail_page_it_was_pressed_on(self, client):
        client.return_value.executions.create.return_value = execution(
            "SUCCESS", {"expire_at": _in(30)})
        detail = reverse("horizon:project:instances:detail", args=["server-1"])

        res = self.post_prolong(HTTP_REFERER="http://testserver" + detail)

        self.assertRedirectsNoFollow(res, "http://testserver" + detail)

    def test_foreign_referer_is_not_followed(self, client):
        client.return_value.executions.create.return_value = execution(
            "SUCCESS", {"expire_at": _in(30)})

        res = self.post_prolong(HTTP_REFERER="http://evil.example.com/")

        self.assertRedirectsNoFollow(res, INDEX_URL)
