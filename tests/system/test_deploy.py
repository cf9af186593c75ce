"""The deployment files (deploy/, docs/deploy.md), each checked against what the app needs.

nginx: a real `nginx -t` of each site, then the site served for real on loopback ports (TLS with a
throw-away certificate, a fake upstream) to check what it routes where. systemd: the units' commands
against `bot.answering.jobs.worker_command` and `systemd-analyze verify`. Compose and the Dockerfile: parsed
and checked (Docker does not run here). `.env.example`: every setting, loadable.
"""

from __future__ import annotations

import ast
import configparser
import datetime
import http.client
import importlib.util
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.answering.jobs import worker_command
from bot.config import LOG_LEVELS, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOMAIN = "bot.example.com"
INSTALL_DIR = "/opt/wechat-bot"
WEB_COMMAND = ["gunicorn", "-c", "deploy/gunicorn.conf.py", "app:create_app()"]
UPSTREAM = f"http://{Settings.model_fields['host'].default}:{Settings.model_fields['port'].default}"


def default(name: str) -> Any:
    return Settings.model_fields[name].get_default(call_default_factory=True)


def expected_worker(processes: int, threads: int, python: str) -> tuple[list[str], dict[str, str]]:
    """bot.answering.jobs.worker_command with the interpreter a deployment uses instead of the test's."""
    command, env = worker_command(processes, threads)
    assert command[0] == sys.executable
    return [python, *command[1:]], env


def split_env_prefix(words: list[str]) -> tuple[list[str], dict[str, str]]:
    """`[exec] [/usr/bin/]env A=1 B=2 cmd…` → (cmd…, {A: 1, B: 2})."""
    if words and words[0] == "exec":
        words = words[1:]
    env: dict[str, str] = {}
    if words and Path(words[0]).name == "env":
        words = words[1:]
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            key, _, value = words[0].partition("=")
            env[key] = value
            words = words[1:]
    return words, env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- nginx ----------------------------------------------------------------------------------------

SITE = DEPLOY / "nginx" / "wechat-bot.conf"
BOOTSTRAP_SITE = DEPLOY / "nginx" / "wechat-bot-bootstrap.conf"


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):  # not on a normal user's PATH
        found = "/usr/sbin/nginx"
    return found


@pytest.fixture(scope="module")
def nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (bash deploy/ensure-test-tools.sh installs it as root)")
    return binary


def write_certificate(directory: Path) -> None:
    """A self-signed certificate for DOMAIN, where certbot would put it (fullchain/privkey)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    (directory / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def replace_exactly(text: str, old: str, new: str, count: int) -> str:
    found = text.count(old)
    assert found == count, f"expected {old!r} {count} times in the site, found {found}"
    return text.replace(old, new)


def site_in(tmp: Path, site: Path, ports: dict[str, int] | None = None) -> Path:
    """The site with its absolute paths moved into `tmp` (and, given `ports`, on loopback ports)."""
    text = site.read_text(encoding="utf-8")
    text = text.replace(f"/etc/letsencrypt/live/{DOMAIN}/", f"{tmp}/letsencrypt/")
    text = text.replace("/var/www/certbot", f"{tmp}/www")
    text = text.replace("/var/log/nginx/", f"{tmp}/logs/")
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    leftovers = [path for path in re.findall(r"(?<![\w.:/])/[\w./-]+", body) if not path.startswith(str(tmp))]
    known = {"/", "/wechat", "/healthz", "/metrics", "/a/", "/a/assets/", "/console/", "/console"}
    known.add("/console/login/")
    leftovers = [path for path in leftovers if path not in known]
    leftovers = [path for path in leftovers if not path.startswith("/.well-known/")]
    assert not leftovers, f"paths the test does not know how to move: {leftovers}"
    if ports is not None:
        text = replace_exactly(text, "listen [::]:80;", "", 1)
        text = replace_exactly(text, "listen 80;", f"listen 127.0.0.1:{ports['http']};", 1)
        if "443" in text:
            text = replace_exactly(text, "listen [::]:443 ssl;", "", 1)
            text = replace_exactly(text, "listen 443 ssl;", f"listen 127.0.0.1:{ports['https']} ssl;", 1)
            text = replace_exactly(
                text, f"proxy_pass {UPSTREAM};", f"proxy_pass http://127.0.0.1:{ports['upstream']};", 5
            )
    for directory in ("letsencrypt", "www/.well-known/acme-challenge", "logs"):
        (tmp / directory).mkdir(parents=True, exist_ok=True)
    target = tmp / "site.conf"
    target.write_text(text, encoding="utf-8")
    return target


def nginx_conf(tmp: Path, site: Path, foreground: bool = False) -> Path:
    """A minimal main config: everything nginx writes lives in `tmp`; it includes the site."""
    lines = [
        "user root;" if foreground and os.geteuid() == 0 else "",  # workers must read tmp (0700)
        "daemon off;" if foreground else "",
        "worker_processes 1;",
        f"pid {tmp}/nginx.pid;",
        f"error_log {tmp}/error.log;",
        "events { worker_connections 64; }",
        "http {",
        f"  client_body_temp_path {tmp}/client_body;",
        f"  proxy_temp_path {tmp}/proxy;",
        f"  fastcgi_temp_path {tmp}/fastcgi;",
        f"  uwsgi_temp_path {tmp}/uwsgi;",
        f"  scgi_temp_path {tmp}/scgi;",
        f"  access_log {tmp}/access.log;",
        f"  include {site};",
        "}",
    ]
    conf = tmp / "nginx.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf


def nginx_test(binary: str, tmp: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "-t", "-p", f"{tmp}/", "-e", f"{tmp}/error.log", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("site", [SITE, BOOTSTRAP_SITE], ids=["site", "bootstrap"])
def test_nginx_accepts_the_site(nginx: str, tmp_path: Path, site: Path) -> None:
    write_certificate(tmp_path / "letsencrypt")
    # `nginx -t` binds the listen addresses: loopback ports work unprivileged and beside a real nginx
    ports = {"http": free_port(), "https": free_port(), "upstream": free_port()}
    result = nginx_test(nginx, tmp_path, nginx_conf(tmp_path, site_in(tmp_path, site, ports)))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "syntax is ok" in output and "test is successful" in output, output
    assert "[warn]" not in output and "[emerg]" not in output, output


def test_site_settings_match_the_app() -> None:
    text = SITE.read_text(encoding="utf-8")
    # /wechat, /a/ (answer pages), /console/ (operator console), /healthz, /metrics: gunicorn's bind
    assert text.count(f"proxy_pass {UPSTREAM};") == 5
    assert "proxy_pass" not in BOOTSTRAP_SITE.read_text(encoding="utf-8")
    timeouts = {name: int(value) for name, value in re.findall(r"(proxy_\w+_timeout) (\d+)s;", text)}
    read_window = default("wechat_attempt_timeout") + default("wechat_reply_margin")
    assert timeouts["proxy_read_timeout"] >= 3 * read_window  # never cut an attempt the bot holds open
    assert timeouts["proxy_send_timeout"] >= 3 * read_window
    body_limit = re.search(r"client_max_body_size (\d+)k;", text)
    assert body_limit is not None and int(body_limit.group(1)) * 1024 <= default("wechat_max_body_bytes")
    assert f"/etc/letsencrypt/live/{DOMAIN}/fullchain.pem" in text
    assert f"/etc/letsencrypt/live/{DOMAIN}/privkey.pem" in text


class Upstream(ThreadingHTTPServer):
    """Stands in for gunicorn: records each request and answers 200 with the path."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), UpstreamHandler)


class UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        payload = f"upstream {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served_site(nginx: str, tmp_path: Path) -> Iterator[tuple[dict[str, int], Upstream]]:
    """The site served by a real nginx on loopback ports, in front of a fake upstream."""
    upstream = Upstream()
    thread = threading.Thread(target=upstream.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    ports = {"http": free_port(), "https": free_port(), "upstream": upstream.server_address[1]}
    write_certificate(tmp_path / "letsencrypt")
    conf = nginx_conf(tmp_path, site_in(tmp_path, SITE, ports), foreground=True)
    (tmp_path / "www/.well-known/acme-challenge/token123").write_text("challenge-ok", encoding="utf-8")
    process = subprocess.Popen(
        [nginx, "-p", f"{tmp_path}/", "-e", f"{tmp_path}/error.log", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports["https"]), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (tmp_path / "error.log").read_text(encoding="utf-8", errors="replace")
                    pytest.fail(f"nginx did not start: {log}")
                time.sleep(0.05)
        yield ports, upstream
    finally:
        process.terminate()
        process.communicate(timeout=10)
        upstream.shutdown()
        upstream.server_close()
        thread.join(timeout=5)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    tls: bool = True,
    source: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection: http.client.HTTPConnection
    if tls:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=context, source_address=(source, 0)
        )
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        headers = {"Host": DOMAIN}
        if body is not None:
            headers["Content-Type"] = "text/xml"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_site_routes_wechat_to_the_app_and_nothing_else(
    served_site: tuple[dict[str, int], Upstream], tmp_path: Path
) -> None:
    ports, upstream = served_site
    query = "/wechat?signature=abc&timestamp=1714036504&nonce=1514711492&openid=o1"

    # port 80: the ACME challenge is served from the webroot, everything else goes to HTTPS
    assert request(ports["http"], "GET", "/.well-known/acme-challenge/token123", tls=False)[0::2] == (
        200,
        b"challenge-ok",
    )
    status, headers, _ = request(ports["http"], "POST", query, body=b"<xml/>", tls=False)
    assert status == 301 and headers["Location"] == f"https://{DOMAIN}{query}"
    assert upstream.seen == []

    # the webhook, with the forwarding headers
    xml = b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName></xml>"
    status, _, body = request(ports["https"], "POST", query, body=xml)
    assert (status, body) == (200, f"upstream {query}".encode())
    seen = upstream.seen.pop()
    assert seen["body"] == xml
    assert seen["headers"]["Host"] == DOMAIN
    assert seen["headers"]["X-Forwarded-Proto"] == "https"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert seen["headers"]["X-Forwarded-Host"] == DOMAIN

    assert request(ports["https"], "GET", "/healthz")[0] == 200
    assert upstream.seen.pop()["path"] == "/healthz"

    # answer pages, their live state and assets (PUBLIC_BASE_URL)
    for path in (
        "/a/AbCdEfGhIjKlMnOpQrStUvWx",
        "/a/AbCdEfGhIjKlMnOpQrStUvWx/live?v=3",
        "/a/assets/page.css?v=1",
    ):
        assert request(ports["https"], "GET", path)[0] == 200, path
        assert upstream.seen.pop()["path"] == path

    # the operator console: its pages, login links and posts reach the app (which checks them); an
    # upload to the knowledge base may be larger than a push
    for method, path in (
        ("GET", "/console/"),
        ("GET", "/console/login/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde"),
        ("POST", "/console/settings/system_prompt"),
    ):
        assert request(ports["https"], method, path, body=b"x" if method == "POST" else None)[0] == 200, path
        assert upstream.seen.pop()["path"] == path
    assert request(ports["https"], "POST", "/console/kb", body=b"x" * (2 * 1024 * 1024))[0] == 200
    assert len(upstream.seen.pop()["body"]) == 2 * 1024 * 1024
    assert request(ports["https"], "POST", "/console/kb", body=b"x" * (12 * 1024 * 1024))[0] == 413
    status, headers, _ = request(ports["https"], "GET", "/console")
    assert status == 301 and headers["Location"].endswith("/console/")

    # /metrics: from this machine only
    assert request(ports["https"], "GET", "/metrics")[0] == 200
    assert upstream.seen.pop()["path"] == "/metrics"
    assert request(ports["https"], "GET", "/metrics", source="127.0.0.2")[0] == 403

    # everything else: 404 without reaching the app; oversized bodies: 413
    for path in (
        "/",
        "/admin",
        "/wechat/x",
        "/wechatx",
        "/ab/x",
        "/consolex",
        "/console.php",
        "/healthz/x",
        "/.env",
        "/.well-known/acme-challenge/x",
    ):
        assert request(ports["https"], "GET", path)[0] == 404, path
    assert request(ports["https"], "POST", "/wechat", body=b"x" * (65 * 1024))[0] == 413
    assert upstream.seen == []
    # a console login link's token stays out of the access log (a link checker's HEAD leaves it valid)
    logged = (tmp_path / "logs/wechat-bot.access.log").read_text(encoding="utf-8")
    assert '"GET /console/login/***"' in logged and "0123456789_-abcde" not in logged
    # so does an answer page's (its link opens the answer); the page's own files are logged as they are
    assert (
        '"GET /a/***"' in logged
        and '"GET /a/***/live"' in logged
        and "AbCdEfGhIjKlMnOpQrStUvWx" not in logged
    )
    assert '"GET /a/assets/page.css"' in logged


# --- systemd --------------------------------------------------------------------------------------

SYSTEMD = DEPLOY / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))


def unit_directives(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Every `Key=value` of each section, in order, duplicates kept (systemd's Environment=…)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current, f"{path.name}: not a directive: {raw!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser


def unit_environment(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in unit_directives(path)["Service"]:
        if key == "Environment":
            for assignment in shlex.split(value):
                name, _, content = assignment.partition("=")
                env[name] = content
    return env


def expand(words: list[str], env: dict[str, str]) -> list[str]:
    """systemd's `${NAME}` expansion in ExecStart (each `${NAME}` stays one word)."""
    return [re.sub(r"\$\{(\w+)\}", lambda match: env[match.group(1)], word) for word in words]


def test_units_parse_and_run_unprivileged() -> None:
    names = {path.name for path in UNITS}
    assert {"wechat-bot-web.service", "wechat-bot-worker.service"} <= names
    assert {"fastchat-controller.service", "fastchat-worker@.service"} <= names
    for path in UNITS:
        parsed = unit(path)
        service = parsed["Service"]
        assert service.get("User") not in (None, "", "root", "0"), path.name
        assert service.get("ExecStart"), path.name
        assert service.get("Restart") == "on-failure", path.name
        assert service.get("NoNewPrivileges") == "yes", path.name
        assert service.get("ProtectSystem") == "strict", path.name
        assert service.get("PrivateTmp") == "yes", path.name
        assert parsed["Install"].get("WantedBy") == "multi-user.target", path.name


def test_bot_units_run_the_apps_commands() -> None:
    for name in ("wechat-bot-web.service", "wechat-bot-worker.service"):
        service = unit(SYSTEMD / name)["Service"]
        assert service["User"] == "wechat-bot"
        assert service["WorkingDirectory"] == INSTALL_DIR
        assert service["EnvironmentFile"] == f"{INSTALL_DIR}/.env"
        # DATA_DIR (relative to the working directory) is the only writable place
        assert service["ReadWritePaths"].lstrip("-") == f"{INSTALL_DIR}/{default('data_dir')}"

    web = unit(SYSTEMD / "wechat-bot-web.service")["Service"]
    command = shlex.split(web["ExecStart"])
    assert command == [f"{INSTALL_DIR}/.venv/bin/{WEB_COMMAND[0]}", *WEB_COMMAND[1:]]
    assert (ROOT / command[2]).is_file()
    module, _, factory = command[3].partition(":")
    assert (ROOT / f"{module}.py").is_file() and factory == "create_app()"
    assert web["KillSignal"] == "SIGTERM"  # gunicorn: TERM is the graceful stop
    assert int(web["TimeoutStopSec"]) > gunicorn_setting("graceful_timeout")

    worker_path = SYSTEMD / "wechat-bot-worker.service"
    worker = unit(worker_path)["Service"]
    defaults = unit_environment(worker_path)
    assert defaults["WORKER_PROCESSES"] == str(default("worker_processes"))
    assert defaults["WORKER_THREADS"] == str(default("worker_threads"))
    assert worker["KillSignal"] == "SIGTERM"  # Dramatiq: TERM lets jobs in flight finish
    assert int(worker["TimeoutStopSec"]) >= 60
    assert importlib.util.find_spec("bot.answering.worker") is not None
    # the command follows WORKER_PROCESSES / WORKER_THREADS of .env, like `make run`
    for processes, threads in ((default("worker_processes"), default("worker_threads")), (3, 64)):
        env = {**defaults, "WORKER_PROCESSES": str(processes), "WORKER_THREADS": str(threads)}
        words, prefix_env = split_env_prefix(expand(shlex.split(worker["ExecStart"]), env))
        assert shlex.split(worker["ExecStart"])[0] == "/usr/bin/env"
        expected, expected_env = expected_worker(processes, threads, f"{INSTALL_DIR}/.venv/bin/python")
        assert words == expected
        assert prefix_env == expected_env


def test_fastchat_units_run_controller_and_worker() -> None:
    controller = shlex.split(unit(SYSTEMD / "fastchat-controller.service")["Service"]["ExecStart"])
    assert controller[1:] == ["-m", "fastchat.serve.controller", "--host", "127.0.0.1", "--port", "21001"]
    worker_path = SYSTEMD / "fastchat-worker@.service"
    env = unit_environment(worker_path)
    worker = expand(shlex.split(unit(worker_path)["Service"]["ExecStart"]), env)
    assert worker[1:3] == ["-m", "fastchat.serve.model_worker"]
    options = dict(zip(worker[3::2], worker[4::2], strict=True))
    assert options["--model-path"] == env["FASTCHAT_MODEL_PATH"]
    assert options["--controller-address"] == "http://127.0.0.1:21001"
    assert options["--worker-address"] == "http://127.0.0.1:%i"
    assert options["--port"] == "%i"
    # the worker registers under the model path's last part: FASTCHAT_MODEL's default
    assert env["FASTCHAT_MODEL_PATH"].rsplit("/", 1)[-1] == default("fastchat_model")
    assert "PrivateDevices" not in unit(worker_path)["Service"]  # it needs the GPU's devices


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    venv_bin = Path(sys.executable).parent
    for path in UNITS:
        text = path.read_text(encoding="utf-8")
        text = text.replace(f"{INSTALL_DIR}/.venv/bin/", f"{venv_bin}/").replace(INSTALL_DIR, str(ROOT))
        text = text.replace("/opt/fastchat/.venv/bin/python3", sys.executable)
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    (tmp_path / "fastchat-worker@21002.service").write_text(
        (tmp_path / "fastchat-worker@.service").read_text(encoding="utf-8"), encoding="utf-8"
    )
    names = [path.name for path in UNITS if not path.name.endswith("@.service")]
    names.append("fastchat-worker@21002.service")
    result = subprocess.run(
        [analyze, "verify", "--man=no", *[f"./{name}" for name in names]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    ours = [line for line in output.splitlines() if str(tmp_path) in line or any(n in line for n in names)]
    assert result.returncode == 0 and not ours, output


# --- Docker Compose -------------------------------------------------------------------------------

DOCKER = DEPLOY / "docker"
COMPOSE = DOCKER / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def shell_expand(text: str, env: dict[str, str]) -> str:
    """Compose's `$$` → `$`, then the shell's `${NAME}` and `${NAME:-fallback}`."""
    text = text.replace("$$", "$")

    def value(match: re.Match[str]) -> str:
        found = env.get(match.group(1), "")
        return found if found or match.group(2) is None else match.group(2)

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", value, text)


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"web", "worker", "redis"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        if "build" in service:
            assert (COMPOSE.parent / service["build"]["context"]).resolve() == ROOT, name
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name

    for name in ("web", "worker"):  # only the bot's own services get the secrets of .env
        env_files = services[name]["env_file"]
        env_files = env_files if isinstance(env_files, list) else [env_files]
        assert [(COMPOSE.parent / path).resolve() for path in env_files] == [ROOT / ".env"], name
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0", name
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    redis_command = services["redis"]["command"]
    assert "--appendonly" in redis_command
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    volume = services["redis"]["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose["volumes"]

    web = services["web"]
    assert web["ports"] == [f"127.0.0.1:{default('port')}:{web['environment']['PORT']}"]
    assert web["environment"]["HOST"] == "0.0.0.0"  # reachable through the published port
    assert web["command"] == WEB_COMMAND == dockerfile_cmd(DOCKER / "Dockerfile")


def test_compose_worker_runs_worker_command(compose: dict[str, Any]) -> None:
    command = compose["services"]["worker"]["command"]
    assert command[:2] == ["sh", "-c"]
    cases = [
        ({}, default("worker_processes"), default("worker_threads")),  # the fallbacks are the defaults
        ({"WORKER_PROCESSES": "3", "WORKER_THREADS": "64"}, 3, 64),  # .env's values win
    ]
    for env, processes, threads in cases:
        words, prefix_env = split_env_prefix(shlex.split(shell_expand(command[2], env)))
        expected, expected_env = expected_worker(processes, threads, "python")
        assert words == expected
        assert prefix_env == expected_env


def test_compose_fastchat_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    controller, worker = services["fastchat-controller"], services["fastchat-worker"]
    for service in (controller, worker):
        assert service["profiles"] == ["fastchat"]
    assert controller["command"][-2:] == ["--port", "21001"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    words = shlex.split(shell_expand(worker["command"][2], {}))
    options = dict(zip(words[4::2], words[5::2], strict=True))
    assert options["--controller-address"] == "http://fastchat-controller:21001"
    assert options["--worker-address"] == f"http://fastchat-worker:{options['--port']}"
    assert options["--model-path"].rsplit("/", 1)[-1] == default("fastchat_model")
    dockerfile = (ROOT / controller["build"]["dockerfile"]).read_text(encoding="utf-8")
    requirements = re.search(r"pip install -r \S*?([\w.-]+\.txt)", dockerfile)
    assert requirements is not None
    assert re.search(r"^fschat==", (ROOT / requirements.group(1)).read_text(encoding="utf-8"), re.M)


def test_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("the docker compose plugin is not installed")
    shutil.copytree(DOCKER, tmp_path / "deploy" / "docker")
    shutil.copy(DEPLOY / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        [
            docker,
            "compose",
            "-f",
            "deploy/docker/docker-compose.yml",
            "--profile",
            "fastchat",
            "config",
            "-q",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- Dockerfile -----------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_cmd(path: Path) -> list[str]:
    commands = [rest for keyword, rest in dockerfile_instructions(path) if keyword == "CMD"]
    return list(yaml.safe_load(commands[-1]))


def test_dockerfile_runs_the_web_tier_unprivileged() -> None:
    path = DOCKER / "Dockerfile"
    instructions = dockerfile_instructions(path)
    keywords = [keyword for keyword, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "pip install -r requirements.txt" in runs
    if (ROOT / "requirements-nodeps.txt").exists():  # what the Makefile installs with --no-deps
        assert "pip install --no-deps -r requirements-nodeps.txt" in runs
    copies = [rest.split() for keyword, rest in instructions if keyword == "COPY"]
    sources = {source for words in copies for source in words[:-1] if not source.startswith("--")}
    assert "requirements.txt" in sources and "." not in sources  # never the whole tree (.env, .venv)
    # every top-level module of the app is in the image
    needed = {path.name for path in ROOT.iterdir() if (path / "__init__.py").is_file()}
    needed |= {path.name for path in ROOT.glob("*.py")}
    needed -= {"tests", "testing", "bench", "tools"}  # the suite, its fakes, benchmarks, developer tools
    assert needed <= sources, f"not copied into the image: {sorted(needed - sources)}"
    assert "deploy/gunicorn.conf.py" in sources
    assert dockerfile_cmd(path) == WEB_COMMAND
    for ignore in (DOCKER / "Dockerfile.dockerignore", DOCKER / "fastchat.Dockerfile.dockerignore"):
        ignored = ignore.read_text(encoding="utf-8").split()
        assert {".env", ".venv"} <= set(ignored), ignore.name


# --- .env.example ---------------------------------------------------------------------------------

ENV_EXAMPLE = DEPLOY / ".env.example"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_env_example", DEPLOY / "gen_env_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=value: {line!r}"
            assert key not in values, f"{key} is listed twice"
            values[key] = value
    return values


def test_env_example_is_up_to_date() -> None:
    expected = generator().render()
    assert ENV_EXAMPLE.read_text(encoding="utf-8") == expected, (
        "deploy/.env.example is out of date: add the new setting's comment to GROUPS in "
        "deploy/gen_env_example.py, then run .venv/bin/python deploy/gen_env_example.py"
    )


def test_env_example_lists_every_setting_once() -> None:
    values = example_values()
    assert sorted(values) == sorted(name.upper() for name in Settings.model_fields)
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    is_safe = generator().is_safe_value
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[index - 1].startswith("# "), f"{line}: no comment above it"
            assert is_safe(line.partition("=")[2]), (
                f"{line}: systemd, Docker and dotenv may read it differently"
            )
    for secret in ("WECHAT_TOKEN", "WECHAT_SECRET", "WECHAT_AES_KEY", "OPENAI_API_KEY", "METRICS_TOKEN"):
        assert values[secret] == "", secret


def test_env_example_loads_once_required_values_are_filled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled = {
        "WECHAT_TOKEN": "example-token",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "OPENAI_API_KEY": "sk-example",
    }
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for key, value in filled.items():
        text = replace_exactly(text, f"\n{key}=\n", f"\n{key}={value}\n", 1)
    (tmp_path / ".env").write_text(text, encoding="utf-8")
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(_env_file=tmp_path / ".env")
    assert settings.wechat_token == "example-token"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    for name in Settings.model_fields:
        if name.upper() not in filled:
            assert getattr(settings, name) == default(name), name


# --- gunicorn, scripts, docs ----------------------------------------------------------------------


def gunicorn_setting(name: str) -> Any:
    """A constant of deploy/gunicorn.conf.py, read without running it (it loads .env)."""
    tree = ast.parse((DEPLOY / "gunicorn.conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not set in deploy/gunicorn.conf.py")


def test_gunicorn_outlives_wechat_attempts() -> None:
    assert gunicorn_setting("worker_class") == "gthread"
    assert gunicorn_setting("timeout") > default("wechat_attempt_timeout") + default("wechat_reply_margin")


#: the log levels deploy/gunicorn.conf.py gives gunicorn's logging, configured as its master does
GUNICORN_LEVELS = """
import logging.config, runpy
config = runpy.run_path("deploy/gunicorn.conf.py")
logging.config.dictConfig(config["logconfig_dict"])
levels = config["logconfig_dict"]
print(levels["root"]["level"], levels["loggers"]["gunicorn.error"]["level"])
"""


@pytest.mark.parametrize(("given", "used"), [("verbose", "INFO"), (" debug", "DEBUG"), ("", "INFO")])
def test_gunicorn_takes_a_log_level_logging_knows(given: str, used: str, tmp_path: Path) -> None:
    """LOG_LEVEL=verbose ended gunicorn's master with `ValueError: Unknown level` before a worker could
    say what is wrong; the workers' settings stop them naming LOG_LEVEL (tests/unit/test_config.py)."""
    env = {**os.environ, "LOG_LEVEL": given, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", GUNICORN_LEVELS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [used, used]
    assert gunicorn_setting("_LOG_LEVELS") == LOG_LEVELS


def test_ensure_test_tools_script_is_valid_bash() -> None:
    result = subprocess.run(
        ["bash", "-n", str(DEPLOY / "ensure-test-tools.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_docs_name_only_files_that_exist() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    mentioned = set(re.findall(r"\b(?:deploy|docs)/[\w./@-]*[\w@]", docs))
    assert mentioned, "docs/deploy.md names no deploy file"
    missing = sorted(path for path in mentioned if not (ROOT / path).exists())
    assert not missing, f"docs/deploy.md names files that do not exist: {missing}"
    for path in [SITE, BOOTSTRAP_SITE, *UNITS, COMPOSE, ENV_EXAMPLE]:
        assert str(path.relative_to(ROOT)) in docs, f"docs/deploy.md does not mention {path.name}"
