"""Where a message enters: Meta's webhook payloads parsed, verified and stored."""
