-- The mail worker leases a message instead of holding its row lock over SMTP:
-- private.mail_claim sets locked_until and commits, the worker sends with no
-- transaction open, then marks the message sent or failed (which clears the
-- lease). A message whose lease has run out (its worker died) is claimed again.
-- depends: 0041_audit_actor_key

alter table app.mail_outbox add column locked_until timestamptz;
