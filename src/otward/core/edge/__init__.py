"""The edge gatekeeper's pure logic: bundle and credential claims, the challenge-response exchange."""
