"""Config of the event side: the webhook secret's sources and permissions, [[notify]] targets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from teleport_sync.config import ConfigError, load_settings

BASE = """
[api]
base_url = "https://api.example.com"
auth_url = "https://auth.example.com/oauth2/token"
client_id = "cid"
client_secret = "client-secret-1"
"""


def make(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_webhook_secret_sources_in_documented_order(tmp_path: Path, clean_env: None) -> None:
    secret_file = make(tmp_path / "webhook_secret", "from-secret-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    make(creds / "webhook_secret", "from-credential\n", 0o400)
    cfg = make(
        tmp_path / "c.toml",
        BASE + '[webhooks]\nlisten = "127.0.0.1:8788"\nsecret = "from-config"\n'
        f'secret_file = "{secret_file}"\n',
    )

    def secret(environ: dict[str, str]) -> tuple[str, str | None]:
        settings = load_settings(cfg, environ=environ)
        assert settings.webhooks.secret is not None
        return settings.webhooks.secret.get_secret_value(), settings.webhook_secret_source

    env = {"TELEPORT_SYNC_WEBHOOKS__SECRET": "from-env", "CREDENTIALS_DIRECTORY": str(creds)}
    assert secret(env) == ("from-env", "$TELEPORT_SYNC_WEBHOOKS__SECRET")
    assert secret({"CREDENTIALS_DIRECTORY": str(creds)})[0] == "from-credential"
    assert secret({}) == ("from-secret-file", str(secret_file))
    only_config = make(
        tmp_path / "c2.toml", BASE + '[webhooks]\nlisten = "127.0.0.1:8788"\nsecret = "in-file"\n'
    )
    assert load_settings(only_config, environ={}).webhooks.secret.get_secret_value() == "in-file"  # type: ignore[union-attr]


def test_exposed_webhook_secrets_are_refused_with_the_fix(tmp_path: Path, clean_env: None) -> None:
    loose = make(tmp_path / "webhook_secret", "s3cret\n", 0o644)
    cfg = make(tmp_path / "c.toml", BASE + f'[webhooks]\nsecret_file = "{loose}"\n')
    with pytest.raises(ConfigError, match=f"webhook signing secret.*chmod 600 {loose}"):
        load_settings(cfg, environ={})
    open_cfg = make(tmp_path / "c2.toml", BASE + '[webhooks]\nsecret = "s3cret"\n', 0o640)
    with pytest.raises(ConfigError, match="readable by group or others"):
        load_settings(open_cfg, environ={})
    notify_cfg = make(
        tmp_path / "c3.toml",
        BASE.replace('client_secret = "client-secret-1"\n', "")
        + '[[notify]]\nurl = "https://hooks.example.com/x"\nsecret = "n"\n',
        0o644,
    )
    with pytest.raises(ConfigError, match=r"notification signing secret \(\[\[notify\]\] secret\)"):
        load_settings(notify_cfg, environ={})


def test_listen_without_a_secret_and_bad_keys_are_named(tmp_path: Path, clean_env: None) -> None:
    cfg = make(tmp_path / "c.toml", BASE + '[webhooks]\nlisten = "127.0.0.1:8788"\n')
    with pytest.raises(ConfigError, match=r"no signing secret.*TELEPORT_SYNC_WEBHOOKS__SECRET"):
        load_settings(cfg, environ={})
    for section, problem in (
        ('[webhooks]\nlisten = "8788"\n', r"\[webhooks\] listen: .*host:port"),
        ('[webhooks]\npath = "hook"\n', r"\[webhooks\] path: .*must start with /"),
        ('[[notify]]\nurl = "http://hooks.example.com/x"\n', r"plain http to a non-loopback"),
        ('[[notify]]\nurl = "https://h.example.com"\nevents = ["done"]\n', r"\[notify\] 0.events"),
        ('[[notify]]\nurl = "https://h.example.com"\nformat = "xml"\n', r"\[notify\] 0.format"),
    ):
        bad = make(tmp_path / "bad.toml", BASE + section)
        with pytest.raises(ConfigError, match=problem):
            load_settings(bad, environ={})


def test_notify_targets_and_stuck_threshold_load(tmp_path: Path, clean_env: None) -> None:
    cfg = make(
        tmp_path / "c.toml",
        BASE
        + "[poll]\nstuck_after_seconds = 900\n"
        + '[[notify]]\nurl = "https://hooks.slack.com/services/T/B/X"\nformat = "slack"\n'
        + 'events = ["ready", "failed"]\n'
        + '[[notify]]\nurl = "http://127.0.0.1:9000/hook"\nsecret = "shh"\n',
    )
    settings = load_settings(cfg, environ={})
    assert settings.poll.stuck_after_seconds == 900
    slack, local = settings.notify
    assert (slack.format, slack.events, slack.secret) == ("slack", ["ready", "failed"], None)
    assert local.format == "json" and set(local.events) == {
        "ready",
        "failed",
        "rejected",
        "held",  # pre-flight holds (added with pre-flight; every kind is the default)
        "auth",
        "stuck",
    }
    assert local.secret is not None and local.secret.get_secret_value() == "shh"
