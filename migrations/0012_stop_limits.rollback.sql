delete from app.rate_limits where bucket in ('stop_client', 'stop_token');
