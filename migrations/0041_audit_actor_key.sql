-- The audit log's key by actor: the actor's id, or a random id for an entry
-- without one (an anonymous stop link). On plain PostgreSQL it is one more
-- column; on a Citus cluster it is the distribution column of the audit log
-- (gateway/tools/citus.py), which must never be null, so that a user's
-- entries are written on that user's shard instead of on the coordinator.
-- private.audit writes it; a row inserted without it gets a random key.
-- Rows already written get their actor's id (the append-only triggers are
-- set aside for this one update).
-- depends: 0040_lookup_routes

alter table app.audit_log add column actor_key uuid;
alter table app.audit_log disable trigger user;
update app.audit_log set actor_key = coalesce(actor_id, pg_catalog.gen_random_uuid());
alter table app.audit_log enable trigger user;
alter table app.audit_log alter column actor_key set default pg_catalog.gen_random_uuid();
alter table app.audit_log alter column actor_key set not null;
create index audit_log_actor_key_created_at_idx on app.audit_log (actor_key, created_at);
