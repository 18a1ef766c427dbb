"""The lab's process and port handling, without the services (runs in the default suite)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from vm_expiry.errors import VmExpiryError
from vm_expiry.lab import lifecycle, processes
from vm_expiry.lab.ports import is_free, resolve

SLEEPER = [
    sys.executable,
    "-c",
    "import time, subprocess, sys; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "time.sleep(60)",
]


def test_stop_ends_the_service_and_its_children(tmp_path: Path) -> None:
    pid = processes.start(tmp_path, "sleeper", SLEEPER)
    assert processes.running_pid(tmp_path, "sleeper") == pid
    processes.wait_until(
        tmp_path, "sleeper", lambda: len(processes.lab_processes(tmp_path, "sleeper")) == 2, 10
    )
    processes.stop(tmp_path, "sleeper", timeout=5)
    assert processes.lab_processes(tmp_path) == []
    assert processes.running_pid(tmp_path, "sleeper") is None
    assert not processes.pid_file(tmp_path, "sleeper").exists()


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    pid_file = processes.pid_file(tmp_path, "keystone")
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text("1 12345\n")
    assert processes.running_pid(tmp_path, "keystone") is None


def test_a_dying_service_fails_with_its_log(tmp_path: Path) -> None:
    processes.start(tmp_path, "broken", [sys.executable, "-c", "print('no config'); exit(3)"])
    with pytest.raises(VmExpiryError, match=r"broken exited(.|\n)*no config"):
        processes.wait_until(tmp_path, "broken", lambda: False, 10)


def test_ports_come_from_flags_then_lab_json_then_defaults() -> None:
    ports = resolve({"keystone": 15000, "rabbit": 15672}, {"keystone": 25000, "nova": None})
    assert ports["keystone"] == 25000
    assert ports["rabbit"] == 15672
    assert ports["nova"] == 8774
    assert ports["nova_seed"] == 8775
    assert ports["rabbit_dist"] == 15672 + 20000


def test_a_port_in_use_names_the_port_and_the_service() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not is_free(port)
        info = {"ports": resolve({}, {"smtp": port})}
        with pytest.raises(VmExpiryError, match=f"port {port} \\(smtp\\) is in use"):
            running = {service: 1 for service in lifecycle.SERVICES}
            lifecycle._check_ports(info, {**running, "smtp": None})
