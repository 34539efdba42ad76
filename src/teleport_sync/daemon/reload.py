"""What a reloaded config (SIGHUP) may change in a running daemon, and what waits for a restart.

Pure: old and new settings in, the settings to run with and the keys whose change is deferred
out. The API client, the journal and the metrics listener are built once; so are the pools
sized by `[upload] concurrency` and `files_at_once`. `[web]` is applied by restarting the
console (consolehost.py).
"""

from __future__ import annotations

from ..config import Settings

# `webhooks`: the receiver's address and secret are bound once (its listening socket).
RESTART_ONLY_SECTIONS = ("api", "journal", "metrics", "webhooks")
RESTART_ONLY_UPLOAD_KEYS = ("concurrency", "files_at_once")


def merge_for_reload(old: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """`new`, with the restart-only parts of `old` kept; and the names of those that differ."""
    later = [name for name in RESTART_ONLY_SECTIONS if getattr(new, name) != getattr(old, name)]
    for name in RESTART_ONLY_SECTIONS:
        setattr(new, name, getattr(old, name))
    new.secret_source = old.secret_source
    new.webhook_secret_source = old.webhook_secret_source
    for key in RESTART_ONLY_UPLOAD_KEYS:
        if getattr(new.upload, key) != getattr(old.upload, key):
            later.append(f"upload.{key}")
        setattr(new.upload, key, getattr(old.upload, key))
    return new, later
