"""Webhooks following the Standard Webhooks specification: the worker that
delivers the outbox (app.webhook_deliveries), its settings, signing and the
SSRF rules. The database decides what is due
(sql/functions/87_webhook_deliveries.sql)."""
