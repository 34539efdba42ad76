"""What the operator sees: where each file is in its life and why (`phases`, pure), the
`status --json` rows (`report`), `status` for people (`view`), which rows its filters keep
(`filters`), the `health` report (`health`), how long files have waited in their phase
(`ages`) and the Prometheus metrics (`metrics`).

Imports the journal, `api.authstate`, `control` (the hold and pause sentences) and the helpers;
the daemon, the web console and the CLI read it, never the other way round.
"""
