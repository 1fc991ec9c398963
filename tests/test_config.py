"""Start-up: settings are checked together and refused with one clear message."""

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from support import ServiceProcess, free_port, wait_for

from config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()
VALID = {
    "TELNYX_API_KEY": "KEYabc",
    "TELNYX_PUBLIC_KEY": PUBLIC_KEY,
    "TELNYX_PHONE_NUMBER": "+13125550100",
}


def problems(source):
    with pytest.raises(ConfigError) as caught:
        load_settings(source)
    return str(caught.value)


def test_defaults_apply_when_only_the_required_settings_are_given():
    settings = load_settings(VALID)

    assert settings.base_url == "https://api.telnyx.com/v2"
    assert settings.database_path == "receipts.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert settings.webhook_tolerance == 300
    assert settings.debug is False
    assert settings.messaging_profile_id is None
    assert settings.webhook_url is None


def test_every_missing_setting_is_named_in_one_message_with_where_to_get_it():
    message = problems({})

    assert message.count("is missing") == 3
    for name in ("TELNYX_API_KEY", "TELNYX_PUBLIC_KEY", "TELNYX_PHONE_NUMBER"):
        assert name in message
    assert "Keys & Credentials" in message
    assert "My Numbers" in message


def test_api_key_pasted_as_public_key_is_named_as_that_mistake():
    message = problems({**VALID, "TELNYX_PUBLIC_KEY": "KEY0185A2B3C4D5E6F_xyz"})

    assert "looks like an API key" in message


@pytest.mark.parametrize(
    ("value", "mentions"),
    [
        (base64.b64encode(bytes(31)).decode(), "31 bytes"),
        (base64.b64encode(bytes(64)).decode(), "64 bytes"),
        ("not*base64", "not valid base64"),
    ],
)
def test_public_key_must_decode_to_32_bytes(value, mentions):
    message = problems({**VALID, "TELNYX_PUBLIC_KEY": value})

    assert "TELNYX_PUBLIC_KEY" in message
    assert mentions in message


def test_several_public_keys_may_be_given_for_rotation():
    second = base64.b64encode(bytes(range(1, 33))).decode()

    settings = load_settings({**VALID, "TELNYX_PUBLIC_KEY": f"{PUBLIC_KEY}, {second}"})

    assert len(settings.public_keys) == 2


def test_malformed_settings_are_all_reported_together():
    message = problems(
        {
            **VALID,
            "TELNYX_PHONE_NUMBER": "3125550100",
            "PORT": "eighty",
            "WEBHOOK_TOLERANCE_SECONDS": "0",
            "FLASK_DEBUG": "maybe",
            "TELNYX_BASE_URL": "ftp://api.telnyx.com",
            "DATABASE_URL": "mysql://localhost/receipts",
        }
    )

    for name in (
        "TELNYX_PHONE_NUMBER",
        "PORT",
        "WEBHOOK_TOLERANCE_SECONDS",
        "FLASK_DEBUG",
        "TELNYX_BASE_URL",
        "DATABASE_URL",
    ):
        assert name in message


def test_a_value_in_the_wrong_setting_is_not_repeated_back():
    message = problems(
        {
            **VALID,
            "TELNYX_PHONE_NUMBER": "KEY0185A2B3C4D5E6F_secret",
            "TELNYX_BASE_URL": "KEY0185A2B3C4D5E6F_secret",
            "DATABASE_URL": "postgresql://user:secret@db/receipts",
        }
    )

    assert "TELNYX_PHONE_NUMBER" in message
    assert "TELNYX_BASE_URL" in message
    assert "secret" not in message


@pytest.mark.parametrize(
    "url",
    ["postgresql://db.example:port/receipts", "postgresql://db.example", "mysql://x/y"],
)
def test_unsupported_or_malformed_database_url_is_refused(url):
    message = problems({**VALID, "DATABASE_URL": url})

    assert "DATABASE_URL" in message
    assert "db.example" not in message  # the URL may hold a password


def test_postgresql_url_selects_postgresql():
    url = "postgresql://user:secret@db.example:5432/receipts"

    settings = load_settings({**VALID, "DATABASE_URL": url, "DATABASE_POOL_SIZE": "8"})

    assert (settings.database_url, settings.database_path) == (url, None)
    assert settings.database_pool_size == 8


def test_in_memory_database_is_refused():
    assert "in-memory" in problems({**VALID, "DATABASE_URL": "sqlite:///:memory:"})


def test_absolute_database_path_is_kept():
    settings = load_settings({**VALID, "DATABASE_URL": "sqlite:////var/lib/r.db"})

    assert settings.database_path == "/var/lib/r.db"


# The real entry point, as a user runs it.


def run_app(cwd, env, timeout=20):
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bare_environment():
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}


def test_python_app_without_settings_exits_with_the_message(tmp_path):
    result = run_app(tmp_path, bare_environment())

    assert result.returncode == 2
    assert "TELNYX_API_KEY is missing" in result.stderr
    assert "TELNYX_PUBLIC_KEY is missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_python_app_reads_dotenv_migrates_and_serves(tmp_path):
    port = free_port()
    settings = {**VALID, "PORT": str(port), "DATABASE_URL": "sqlite:///data/r.db"}
    (tmp_path / ".env").write_text(
        "".join(f"{name}={value}\n" for name, value in settings.items())
    )

    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        cwd=tmp_path,
        env=bare_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        response = wait_for(f"http://127.0.0.1:{port}/messages")
        assert response.status_code == 200
        assert response.json() == []
        assert (tmp_path / "data" / "r.db").exists()
        assert "Werkzeug" not in response.headers["Server"]
        assert "Python" not in response.headers["Server"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_debug_mode_never_serves_the_interactive_debugger(tmp_path, public_key):
    port = free_port()
    env = {
        **bare_environment(),
        **VALID,
        "TELNYX_PUBLIC_KEY": public_key,
        "FLASK_DEBUG": "1",
        "PORT": str(port),
    }
    service = ServiceProcess(
        [sys.executable, str(ROOT / "app.py")], tmp_path, env, tmp_path / "log", port
    )
    try:
        console = requests.get(f"{service.url}/console", timeout=5)
        resource = requests.get(
            f"{service.url}/messages?__debugger__=yes&cmd=resource&f=style.css",
            timeout=5,
        )
    finally:
        service.stop()

    assert console.status_code == 404
    assert console.headers["Content-Type"] == "application/json"
    assert resource.status_code == 400
    assert resource.headers["Content-Type"] == "application/json"


def test_gunicorn_refuses_bad_settings_with_the_same_message(tmp_path):
    env = {**bare_environment(), **VALID, "TELNYX_PHONE_NUMBER": "555-0100"}

    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
        + ["app:create_app()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "TELNYX_PHONE_NUMBER must be in E.164 form" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_worker_outlives_the_telnyx_timeout(monkeypatch, tmp_path):
    for name, value in {**VALID, "TELNYX_TIMEOUT_SECONDS": "60"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings = {}

    exec((ROOT / "gunicorn.conf.py").read_text(), settings)  # noqa: S102

    assert settings["timeout"] > 60
    assert settings["preload_app"] is False
