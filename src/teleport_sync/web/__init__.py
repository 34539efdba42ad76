"""The local web console: live queue, capture timelines, pictures, actions (`[web] listen`).

It talks to the journal and the daemon only (through `facade.Console`); the daemon starts it
and is seen only through the `link.DaemonLink` protocol. Imports the journal, `status`,
`control` and the helpers; never the daemon or the CLI.
"""
