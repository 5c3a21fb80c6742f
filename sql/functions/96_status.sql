-- What `python -m gateway status` shows an operator on one screen, read in one
-- statement: queue depths, failed mail, webhook deliveries pending and failed, the audit of the last hour, the users
-- most refused by rate limits, the audit log's partitions, the NOTIFY queue.

/**
 * {mail: {queued, failed, last_failed_at}, webhooks: {pending, failed,
 *  last_failed_at}, audit_last_hour: [{action, rows}],
 *  most_refused: [{user_id, refused}], generated_at}. audit_last_hour: entries
 * created in the last hour, by action, most first. most_refused: the `top`
 * users with the most refused attempts (app.audit_refusals, every action and
 * outcome) in windows with a refusal in the last day. webhooks.pending: deliveries
 * waiting for enabled endpoints (joinery_webhook_pending); failed: given up on
 * after the last retry (joinery_webhook_failed_total). audit_partitions:
 * {through: the first day after the last monthly partition (rows of later
 * months would land in the default partition), default_rows: rows in the
 * default partition (joinery_audit_default_rows; should be 0)}.
 * notify_queue_usage: the fraction of the NOTIFY queue in use, 0 to 1
 * (pg_notification_queue_usage(), joinery_notify_queue_usage): a listener
 * that stops reading fills it, and at 1 every transaction that notifies fails.
 */
create function private.status(top integer default 5) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
    return pg_catalog.jsonb_build_object(
        'generated_at', pg_catalog.now(),
        'mail', (
            select pg_catalog.jsonb_build_object(
                'queued', pg_catalog.count(*) filter (
                    where m.sent_at is null and m.cancelled_at is null and m.failed_at is null),
                'failed', pg_catalog.count(*) filter (where m.failed_at is not null),
                'last_failed_at', pg_catalog.max(m.failed_at))
            from app.mail_outbox m),
        'webhooks', (
            select pg_catalog.jsonb_build_object(
                'pending', pg_catalog.count(*) filter (where d.status = 'pending' and e.enabled),
                'failed', pg_catalog.count(*) filter (where d.status = 'failed'),
                'last_failed_at', pg_catalog.max(d.failed_at))
            from app.webhook_deliveries d
            join app.webhook_endpoints e on e.id = d.endpoint_id
            where d.status in ('pending', 'failed')),
        'audit_last_hour', (
            select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'action', x.action, 'rows', x.n) order by x.n desc, x.action), '[]')
            from (select a.action, pg_catalog.count(*) as n from app.audit_log a
                  where a.created_at > pg_catalog.now() - interval '1 hour'
                  group by a.action) x),
        'audit_partitions', pg_catalog.jsonb_build_object(
            'through', (
                select pg_catalog.max(pg_catalog.substring(
                           pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                           'TO \(''([^'']+)''\)')::timestamptz)
                from pg_catalog.pg_inherits i
                join pg_catalog.pg_class c on c.oid = i.inhrelid
                where i.inhparent = 'app.audit_log'::regclass),
            'default_rows', private.audit_default_rows()),
        'notify_queue_usage', pg_catalog.pg_notification_queue_usage(),
        'most_refused', (
            select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'user_id', x.actor_id, 'refused', x.n) order by x.n desc, x.actor_id),
                   '[]')
            from (select r.actor_id, pg_catalog.sum(r.refused) as n from app.audit_refusals r
                  where r.last_at > pg_catalog.now() - interval '1 day'
                  group by r.actor_id
                  order by n desc, r.actor_id
                  limit greatest(status.top, 0)) x));
end;
$$;
grant execute on function private.status(integer) to service_role;
