"""The `paddy` command: parses flags, calls one library function per command, prints; nothing imports it."""
