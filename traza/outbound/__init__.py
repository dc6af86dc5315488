"""Where messages leave: the outbox, the channels, and the sender job's logic."""
