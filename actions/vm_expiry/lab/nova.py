"""Starting the Nova runner (``nova_runner.py``) in the openstack venv."""

from __future__ import annotations

import json
from pathlib import Path

from vm_expiry.lab import processes

IMAGE_ID = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
FLAVOR_ID = "1"


def url(port: int) -> str:
    """Nova's compute endpoint as registered in the catalog."""
    return f"http://127.0.0.1:{port}/v2.1"


def seed_url(seed_port: int) -> str:
    """The runner's seeding endpoint (see ``nova_runner``)."""
    return f"http://127.0.0.1:{seed_port}/seed"


def fix_venv(venv: Path) -> None:
    """Let Nova find the api-paste.ini its wheel installs under ``<venv>/etc``.

    Nova's test configuration looks for ``etc/nova/api-paste.ini`` next to the ``nova``
    package, that is in site-packages.
    """
    for site_packages in (venv / "lib").glob("python3*/site-packages"):
        link = site_packages / "etc"
        if not link.exists():
            link.symlink_to(venv / "etc")


def start(lab_dir: Path, venv: Path, port: int, seed_port: int, auth: dict[str, str]) -> int:
    """Start the runner serving the compute API on ``port`` and seeding on ``seed_port``."""
    home = lab_dir / "nova"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "runner.json"
    config.write_text(
        json.dumps(
            {
                "port": port,
                "seed_port": seed_port,
                "auth": auth,
                "log_file": str(processes.log_file(lab_dir, "nova")),
            },
            indent=2,
        )
    )
    config.chmod(0o600)
    runner = Path(__file__).with_name("nova_runner.py")
    argv = [str(venv / "bin" / "python"), "-I", str(runner), str(config)]
    return processes.start(lab_dir, "nova", argv, cwd=home)
