"""The generated NGINX configs: NGINX accepts the local and the production one, and the
gateway's rules are in them.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mesh import nginx
from tests.unit.mesh.generated_config import NGINX, OUT


def _nginx_t(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(NGINX), "-t", "-p", f"{prefix}/", "-c", str(conf), "-g", f"pid {prefix}/n.pid;"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.skipif(not NGINX.exists(), reason="nginx (Debian) not installed")
def test_nginx_accepts_local_config_as_the_stack_runs_it(tmp_path) -> None:
    # The stack passes `daemon off; pid ...;` with -g: a pid/daemon directive in the file
    # would make NGINX refuse to start ("directive is duplicate").
    result = _nginx_t(OUT / "nginx" / "nginx.conf", tmp_path)
    assert result.returncode == 0, result.stderr


def _self_signed(dir_: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    dir_.mkdir(parents=True)
    (dir_ / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (dir_ / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.mark.skipif(not NGINX.exists(), reason="nginx (Debian) not installed")
def test_nginx_accepts_prod_config(tmp_path) -> None:
    conf_dir = tmp_path / "etc"
    _self_signed(conf_dir / "tls")
    conf = conf_dir / "nginx.conf"
    conf.write_text((OUT / "nginx" / "nginx.prod.conf").read_text())
    result = _nginx_t(conf, tmp_path / "prefix")
    assert result.returncode == 0, result.stderr


def test_nginx_config_has_the_gateway_rules() -> None:
    local = (OUT / "nginx" / "nginx.conf").read_text()
    prod = (OUT / "nginx" / "nginx.prod.conf").read_text()
    code = "\n".join(line.split("#")[0] for line in local.splitlines())
    assert not re.search(r"^\s*(daemon|pid)\s", code, re.M)
    for needed in (
        "listen 127.0.0.1:8080;",
        "limit_req_status 429;",
        "client_max_body_size 1m;",
        "proxy_buffering off;",
        "keepalive_requests 100000;",
        "keepalive 64;",
        "proxy_http_version 1.1;",
        "location = /.well-known/jwks.json",
        "frame-ancestors 'none'",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "escape=json",
        "gzip on;",
    ):
        assert needed in local, needed
    assert "Strict-Transport-Security" not in local
    assert "Strict-Transport-Security" in prod
    assert nginx.render(nginx.NginxOptions()) == local
