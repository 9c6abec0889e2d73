"""Nostr transport: relays (embedded and remote) and the client side."""
