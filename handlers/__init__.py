"""What happens to each kind of inbound message and to each chat command."""
