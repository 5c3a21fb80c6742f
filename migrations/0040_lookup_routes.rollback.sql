drop table app.like_group_routes;
drop table app.pair_token_routes;
drop table app.pair_code_routes;
drop table app.group_invite_routes;
