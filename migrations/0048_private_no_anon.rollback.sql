grant usage on schema private to anon;
