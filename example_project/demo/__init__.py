"""The demo: a page that uses a token, and commands that set up the local provider."""
