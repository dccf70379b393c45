"""The example project: the app wired into a site, plus a local demo authorization server."""
