delete from app.rate_limits where bucket in ('stop_client', 'stop_token');
update app.rate_limits set description = 'revoking group invites by code or id'
where bucket = 'revoke_invite';
