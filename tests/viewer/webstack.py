"""The viewer a surgeon uses, on loopback: Orthanc with DICOMweb, nginx serving OHIF's published build and
proxying ``/dicom-web/`` to Orthanc (one origin, as OHIF's deployment guide does it), headless Chromium.

OHIF's build loads its scripts from the site root, so it cannot live under Orthanc's ServeFolders prefix
without rebuilding it; nginx in front of both is the usual deployment. ``deploy/setup.sh --test`` installs
Debian's nginx-light, chromium and orthanc-dicomweb and unpacks the pinned ``@ohif/app`` into ``.cache/ohif``.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from tests.conftest import REPO, free_port, require_tool
from tests.pacs import Orthanc, start_server

OHIF_DIR = REPO / ".cache" / "ohif"
APP_CONFIG = Path(__file__).with_name("app-config.js")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"]  # plus --headless, which Playwright adds

NGINX_CONF = """
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
daemon off;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {work}/nginx-access.log;
    client_body_temp_path {work}/tmp-body;
    proxy_temp_path {work}/tmp-proxy;
    fastcgi_temp_path {work}/tmp-fastcgi;
    uwsgi_temp_path {work}/tmp-uwsgi;
    scgi_temp_path {work}/tmp-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {dist};
        location = /app-config.js {{ alias {app_config}; }}
        # Streamed, never buffered to a temp file: nginx's workers run as nobody and cannot write under the
        # test's private temporary directory (a buffered large frame would be cut short).
        location /dicom-web/ {{ proxy_pass http://127.0.0.1:{orthanc}; proxy_buffering off; }}
        location / {{ try_files $uri $uri/ /index.html; }}
    }}
}}
"""


def ohif_dist() -> Path:
    dist = OHIF_DIR / "dist"
    require_tool(str(dist / "index.html"))  # skipped locally, failed in CI, when setup.sh has not fetched it
    return dist


def ohif_version() -> str:
    return (OHIF_DIR / "version").read_text().strip()


class Nginx:
    """nginx in the foreground with its own configuration, logs and temp files under ``workdir``."""

    def __init__(self, workdir: Path, orthanc: Orthanc) -> None:
        self.binary = require_tool("/usr/sbin/nginx")
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(work=workdir, port=self.port, dist=ohif_dist(),
                                               app_config=APP_CONFIG, orthanc=orthanc.http_port))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        # nginx writes its own errors to nginx-error.log (-e); what it prints at start-up goes to nginx.out
        self.process = start_server([self.binary, "-c", str(self.conf), "-p", str(self.workdir),
                                     "-e", str(self.workdir / "nginx-error.log")], self.workdir / "nginx.out",
                                    self._up, "nginx", timeout=30)
        return self

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/app-config.js", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
