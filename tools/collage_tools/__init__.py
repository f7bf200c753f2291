"""The local tools around the collage processor: the `collage` command, the embedded AWS
emulator, synthetic covers and a loopback cover server, the database export.

None of this is deployed: the Lambda functions run `collage` (functions/collage) alone, which
imports nothing from here.
"""
