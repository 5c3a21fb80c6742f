drop index app.audit_log_actor_key_created_at_idx;
alter table app.audit_log drop column actor_key;
