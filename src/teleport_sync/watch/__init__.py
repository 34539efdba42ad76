"""Finding settled files: inotify and scans (`watcher`), watch roots re-checked while the daemon
runs (`roots`, `mounts`: network shares are polled), per-folder settings and sidecars
(`folders`), files noticed but not yet taken (`sightings`), and the hold a new journal puts on
files it finds in a folder another journal watched (`lostjournal`).

Imports `inputs`, the journal and the helpers; the daemon wires it, nothing below imports it.
"""
