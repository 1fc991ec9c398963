"""Fixtures: the app on a temporary SQLite file, a Telnyx stand-in on loopback
over real HTTP, and a real Ed25519 key pair that signs realistic events."""

import base64
import os

import psycopg
import pytest
from nacl.signing import SigningKey
from support import (
    API_KEY,
    FROM_NUMBER,
    POSTGRES_URL,
    Store,
    Webhooks,
    gunicorn_service,
)

from app import create_app
from telnyx_simulator import TelnyxSimulator

# Settings the app reads; cleared so a developer's shell cannot leak into tests.
SETTING_NAMES = (
    "TELNYX_API_KEY",
    "TELNYX_PUBLIC_KEY",
    "TELNYX_PHONE_NUMBER",
    "TELNYX_BASE_URL",
    "TELNYX_MESSAGING_PROFILE_ID",
    "TELNYX_WEBHOOK_URL",
    "TELNYX_TIMEOUT_SECONDS",
    "DATABASE_URL",
    "API_TOKEN",
    "PROMETHEUS_MULTIPROC_DIR",
    "SQLITE_SYNCHRONOUS",
    "WEBHOOK_TOLERANCE_SECONDS",
    "FLASK_DEBUG",
    "HOST",
    "PORT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def signing_key():
    return SigningKey.generate()


@pytest.fixture(scope="session")
def public_key(signing_key):
    return base64.b64encode(bytes(signing_key.verify_key)).decode()


@pytest.fixture(scope="session")
def telnyx_server():
    simulator = TelnyxSimulator(
        api_key=API_KEY, phone_number=FROM_NUMBER, slow_seconds=2.5
    )
    simulator.base_url = simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def telnyx(telnyx_server):
    """The Telnyx stand-in, with no requests or messages from earlier tests."""
    telnyx_server.reset()
    return telnyx_server


@pytest.fixture(scope="session")
def postgres():
    """Whether the PostgreSQL server of the tests answers, and if not, why."""
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as error:
        reason = f"no PostgreSQL at {POSTGRES_URL} ({type(error).__name__})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must test PostgreSQL too")
        return reason
    return None


@pytest.fixture
def postgres_store(postgres):
    """A fresh, empty schema on the PostgreSQL server, dropped afterwards."""
    if postgres:
        pytest.skip(f"{postgres}: set TEST_POSTGRESQL_URL to test PostgreSQL")
    store = Store.new_postgres_schema(POSTGRES_URL)
    yield store
    store.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """An empty database of each kind; each test runs once on both."""
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'receipts.db'}")
    return request.getfixturevalue("postgres_store")


@pytest.fixture
def settings(telnyx, public_key, store):
    return {
        "TELNYX_API_KEY": API_KEY,
        "TELNYX_PUBLIC_KEY": public_key,
        "TELNYX_PHONE_NUMBER": FROM_NUMBER,
        "TELNYX_BASE_URL": telnyx.base_url,
        "TELNYX_TIMEOUT_SECONDS": "1",
        "DATABASE_URL": store.url,
    }


@pytest.fixture
def make_app(settings):
    """Build apps on the test's database; their connections close afterwards."""
    built = []

    def make(**overrides):
        app = create_app({**settings, **overrides})
        app.testing = True
        built.append(app)
        return app

    yield make
    for app in built:
        app.extensions["receipts"].database.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def webhooks(client, signing_key):
    return Webhooks(client, signing_key)


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory, public_key):
    """The app under gunicorn, four worker processes sharing one SQLite file."""
    folder = tmp_path_factory.mktemp("gunicorn")
    service = gunicorn_service(folder, public_key)
    yield service, folder / "receipts.db"
    service.stop()
