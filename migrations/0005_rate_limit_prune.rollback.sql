drop index if exists app.rate_limit_hits_created_at_idx;
