"""Mail: the outbox worker that delivers invitation mail over SMTP."""
