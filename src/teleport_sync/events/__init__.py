"""Events in and out: Teleport's signed webhooks (`webhooks`), our notifications (`payloads`,
`formats`, `outbox`), and what the daemon tells them (`emitter`).

Imports the layers below (config, journal, retry, logging) and nothing of the daemon.
"""
