from __future__ import annotations

import os
import typing
from pathlib import Path

import pytest

from teleport_sync.config import ConfigError, find_config_file, load_settings

BASE = """
[api]
base_url = "https://api.example.com"
auth_url = "https://auth.example.com/oauth2/token"
client_id = "cid"
"""


def make(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.source_path in (None, Path("/etc/teleport-sync/config.toml"))
    assert settings.upload.concurrency == 8
    assert settings.results.profiles == ["ply"]


def test_environment_overrides_file_key_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    cfg = make(
        tmp_path / "c.toml", BASE + 'client_secret = "from-file"\n[upload]\nconcurrency = 3\n'
    )
    monkeypatch.setenv("TELEPORT_SYNC_API__CLIENT_SECRET", "from-env")
    monkeypatch.setenv("TELEPORT_SYNC_UPLOAD__CONCURRENCY", "7")
    settings = load_settings(cfg)
    assert settings.client_secret_value() == "from-env"
    assert settings.secret_source == "$TELEPORT_SYNC_API__CLIENT_SECRET"
    assert settings.upload.concurrency == 7
    assert settings.api.client_id == "cid"  # untouched keys keep the file's value


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        # A typo in the key: the variable is named, with the one meant.
        (
            "TELEPORT_SYNC_WATCH__PATH",
            "/srv/inbox",
            "environment variable TELEPORT_SYNC_WATCH__PATH ([watch] path): unknown key "
            "(did you mean TELEPORT_SYNC_WATCH__PATHS?)",
        ),
        (
            "TELEPORT_SYNC_UPLOAD__CONCURRENCY",
            "eight",
            "environment variable TELEPORT_SYNC_UPLOAD__CONCURRENCY ([upload] concurrency): "
            "Input should be a valid integer",
        ),
        # pydantic-settings would ignore these two in silence.
        (
            "TELEPORT_SYNC_WACTH__PATHS",
            '["/srv/inbox"]',
            "environment variable TELEPORT_SYNC_WACTH__PATHS: no section [wacth] "
            "(did you mean TELEPORT_SYNC_WATCH__PATHS?)",
        ),
        (
            "TELEPORT_SYNC_API_CLIENT_ID",
            "cid",
            "did you mean TELEPORT_SYNC_API__CLIENT_ID (two underscores",
        ),
        # A list not written as JSON: one line, not a traceback.
        (
            "TELEPORT_SYNC_WATCH__PATHS",
            "/srv/inbox",
            "environment variable TELEPORT_SYNC_WATCH__PATHS: a list or a table is written as "
            """JSON, e.g. TELEPORT_SYNC_WATCH__PATHS='["/srv/inbox"]'""",
        ),
    ],
)
def test_a_bad_environment_variable_is_named_not_blamed_on_the_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_env: None,
    variable: str,
    value: str,
    says: str,
) -> None:
    cfg = make(tmp_path / "c.toml", BASE)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings(cfg)
    message = str(raised.value)
    assert message.startswith("invalid configuration in the environment: "), message
    assert says in message
    assert str(cfg) not in message  # the file is fine: it is not blamed


def test_file_and_environment_problems_each_name_their_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    cfg = make(tmp_path / "c.toml", BASE + "[watch]\nsettle_second = 3\n")
    monkeypatch.setenv("TELEPORT_SYNC_WATCH__PATH", "/srv/inbox")
    monkeypatch.setenv("TELEPORT_SYNC_NO_MD5_LANES", "1")  # not a setting, and not a typo
    with pytest.raises(ConfigError) as raised:
        load_settings(cfg)
    message = str(raised.value)
    assert message.startswith(f"invalid configuration in {cfg} and the environment: ")
    assert "[watch] settle_second: unknown key (did you mean `settle_seconds`?)" in message
    assert "environment variable TELEPORT_SYNC_WATCH__PATH ([watch] path)" in message
    assert "NO_MD5_LANES" not in message


def test_secret_sources_in_documented_order(tmp_path: Path) -> None:
    secret_file = make(tmp_path / "secret", "from-secret-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    make(creds / "client_secret", "from-credential\n", 0o400)
    cfg = make(
        tmp_path / "c.toml",
        BASE + f'client_secret = "from-config"\nclient_secret_file = "{secret_file}"\n',
    )
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert load_settings(cfg, environ=env).client_secret_value() == "from-credential"
    assert load_settings(cfg, environ={}).client_secret_value() == "from-secret-file"
    cfg2 = make(tmp_path / "c2.toml", BASE + 'client_secret = "from-config"\n')
    assert load_settings(cfg2, environ={}).client_secret_value() == "from-config"


def test_config_readable_by_others_holding_the_secret_is_refused(tmp_path: Path) -> None:
    cfg = make(tmp_path / "c.toml", BASE + 'client_secret = "s3cr3t-value"\n', 0o644)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    message = str(info.value)
    assert str(cfg) in message and "chmod 600" in message
    assert "s3cr3t-value" not in message


def test_config_readable_by_others_without_secret_is_fine(tmp_path: Path) -> None:
    cfg = make(tmp_path / "c.toml", BASE, 0o644)
    assert load_settings(cfg, environ={"TELEPORT_SYNC_API__CLIENT_SECRET": "x"}).api.client_id


def test_loose_secret_file_is_refused(tmp_path: Path) -> None:
    secret_file = make(tmp_path / "secret", "abc", 0o640)
    cfg = make(tmp_path / "c.toml", BASE + f'client_secret_file = "{secret_file}"\n')
    with pytest.raises(ConfigError, match=r"chmod 600 .*secret"):
        load_settings(cfg, environ={})


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://api.example.com", False),
        ("http://10.0.0.5:8080", False),
        ("http://127.0.0.1:8787", True),
        ("http://localhost:8787", True),
        ("http://[::1]:8787", True),
        ("https://api.example.com", True),
    ],
)
def test_plain_http_only_to_loopback(tmp_path: Path, url: str, ok: bool) -> None:
    cfg = make(tmp_path / "c.toml", BASE.replace("https://api.example.com", url))
    if ok:
        assert load_settings(cfg, environ={}).api.base_url == url
    else:
        with pytest.raises(ConfigError, match=r"\[api\] base_url.*https://"):
            load_settings(cfg, environ={})


def test_validation_errors_name_the_toml_key(tmp_path: Path) -> None:
    cfg = make(tmp_path / "c.toml", BASE + "[upload]\nconcurrency = 0\n")
    with pytest.raises(ConfigError, match=r"\[upload\] concurrency: .*greater than or equal to 1"):
        load_settings(cfg, environ={})


def test_unknown_key_is_called_a_typo(tmp_path: Path) -> None:
    cfg = make(tmp_path / "c.toml", BASE + "[poll]\ninterval_secnds = 3\n")
    with pytest.raises(ConfigError, match=r"\[poll\] interval_secnds: unknown key"):
        load_settings(cfg, environ={})


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    cfg = make(tmp_path / "c.toml", "[api\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(cfg, environ={})


def test_bad_name_template_is_explained(tmp_path: Path) -> None:
    cfg = make(tmp_path / "c.toml", BASE + '[upload]\nname_template = "{nmae}"\n')
    with pytest.raises(ConfigError, match=r"\[upload\] name_template: .*\{stem\}"):
        load_settings(cfg, environ={})


def test_config_file_discovery_order(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "teleport-sync").mkdir(parents=True)
    xdg_file = make(xdg / "teleport-sync" / "config.toml", BASE)
    env_file = make(tmp_path / "env.toml", BASE)
    explicit = make(tmp_path / "explicit.toml", BASE)
    environ = {"XDG_CONFIG_HOME": str(xdg), "TELEPORT_SYNC_CONFIG": str(env_file)}
    assert find_config_file(explicit, environ) == explicit
    assert find_config_file(None, environ) == env_file
    assert find_config_file(None, {"XDG_CONFIG_HOME": str(xdg)}) == xdg_file
    with pytest.raises(ConfigError, match="does not exist"):
        find_config_file(tmp_path / "nope.toml", environ)


def test_example_config_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    from teleport_sync.config import Settings

    example = Path(__file__).parent.parent / "config.example.toml"
    text = example.read_text()
    cfg = make(tmp_path / "c.toml", text)
    load_settings(cfg, environ={"TELEPORT_SYNC_API__CLIENT_SECRET": "x"})
    for section_name, section in Settings.model_fields.items():
        if section_name in ("source_path", "secret_source", "webhook_secret_source"):
            continue
        assert f"[{section_name}]" in text, f"config.example.toml lacks [{section_name}]"
        # An array of tables ([[notify]]) documents its item's keys.
        model = (
            typing.get_args(section.annotation)[0]
            if section_name == "notify"
            else section.annotation
        )
        for key in model.model_fields:  # type: ignore[union-attr]
            assert f"\n{key} =" in text or f"\n# {key} =" in text, f"undocumented: {key}"
