"""Local-only tools: the embedded AWS emulator, synthetic covers, a loopback cover server."""
