// @supabase/supabase-js, unchanged, against a running joinery gateway.
// Run by tests/test_supabase_js.py, which starts the gateway and makes a user:
//   cd tests/js && GATEWAY_URL=http://127.0.0.1:PORT USER_TOKEN=<jwt> USER_ID=<uuid> \
//     ANON_TOKEN=<jwt> node --test
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through tests/test_supabase_js.py`);
  return value;
}

const GATEWAY_URL = required('GATEWAY_URL');
const USER_TOKEN = required('USER_TOKEN');
const USER_ID = required('USER_ID');
const ANON_TOKEN = required('ANON_TOKEN');

// Every request the clients send, so that a test can tell how a call went out.
const sent = [];
function recordingFetch(input, init = {}) {
  sent.push({
    method: init.method ?? 'GET',
    url: new URL(String(input)),
    headers: new Headers(init.headers),
  });
  return fetch(input, init);
}

// supabase-js builds a realtime client in createClient, which needs a WebSocket: Node.js
// has one built in from 22 on; before that, Supabase's documented answer is the ws package.
// No socket is opened here (only rpc is called).
const realtime = globalThis.WebSocket ? {} : { transport: ws };

function clientFor(key) {
  return createClient(GATEWAY_URL, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    global: { fetch: recordingFetch },
    realtime,
  });
}

const ERROR_KEYS = ['code', 'details', 'hint', 'message'];

describe('supabase-js rpc with a user JWT as the key', () => {
  const supabase = clientFor(USER_TOKEN);
  const name = `js client ${Date.now()}`;
  let group;

  before(async () => {
    const { data, error, status } = await supabase.rpc('create_group', { name });
    assert.equal(error, null);
    assert.equal(status, 200);
    group = data;
  });

  test('create_group returns the group as an object', () => {
    assert.deepEqual(Object.keys(group).sort(), ['created_at', 'creator_id', 'id', 'name']);
    assert.equal(group.name, name);
    assert.equal(group.creator_id, USER_ID);
    assert.match(group.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.ok(!Number.isNaN(Date.parse(group.created_at)), group.created_at);
  });

  test('my_groups returns a JSON array holding the new group (POST)', async () => {
    const sentBefore = sent.length;
    const { data, error, status } = await supabase.rpc('my_groups');
    assert.equal(error, null);
    assert.equal(status, 200);
    assert.equal(sent.length, sentBefore + 1);
    assert.equal(sent.at(-1).method, 'POST');
    assert.equal(sent.at(-1).url.pathname, '/rest/v1/rpc/my_groups');
    assert.equal(sent.at(-1).headers.get('apikey'), USER_TOKEN);
    assert.equal(sent.at(-1).headers.get('authorization'), `Bearer ${USER_TOKEN}`);
    assert.ok(Array.isArray(data), `not an array: ${JSON.stringify(data)}`);
    const mine = data.filter((g) => g.id === group.id);
    assert.equal(mine.length, 1);
    assert.equal(mine[0].name, name);
    assert.equal(mine[0].creator_id, USER_ID);
    assert.equal(mine[0].role, 'owner');
    assert.equal(mine[0].member_count, 1);
  });

  test('my_groups over GET ({ get: true }) gives the same array', async () => {
    const sentBefore = sent.length;
    const post = await supabase.rpc('my_groups');
    const get = await supabase.rpc('my_groups', {}, { get: true });
    assert.equal(get.error, null);
    assert.equal(get.status, 200);
    assert.equal(sent.length, sentBefore + 2);
    assert.equal(sent.at(-1).method, 'GET');
    assert.equal(sent.at(-1).url.pathname, '/rest/v1/rpc/my_groups');
    assert.deepEqual(get.data, post.data);
    assert.ok(get.data.some((g) => g.id === group.id));
  });

  test('group_members over GET passes arguments in the query string', async () => {
    const { data, error, status } = await supabase.rpc(
      'group_members', { group_id: group.id }, { get: true });
    assert.equal(error, null);
    assert.equal(status, 200);
    assert.equal(sent.at(-1).method, 'GET');
    assert.equal(sent.at(-1).url.searchParams.get('group_id'), group.id);
    assert.deepEqual(data.map((m) => [m.user_id, m.role]), [[USER_ID, 'owner']]);
  });

  test('a malformed code reaches the client as a PostgREST error, status 400', async () => {
    const { data, error, status, statusText } = await supabase.rpc(
      'join_group', { code: 'not-a-code' });
    assert.equal(status, 400);
    assert.equal(statusText, 'Bad Request');
    assert.equal(data, null);
    assert.deepEqual(Object.keys(error).sort(), ERROR_KEYS);
    assert.equal(error.code, 'PT400');
    assert.equal(error.message, 'The invite code is malformed.');
    assert.equal(error.details, 'malformed');
    assert.equal(error.hint, 'An invite code looks like 7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b.');
  });

  test('an unknown function is 404 PGRST202', async () => {
    const { data, error, status } = await supabase.rpc('no_such_function');
    assert.equal(status, 404);
    assert.equal(data, null);
    assert.deepEqual(Object.keys(error).sort(), ERROR_KEYS);
    assert.equal(error.code, 'PGRST202');
    assert.equal(error.message,
      'Could not find the function api.no_such_function without parameters in the schema cache');
  });

  test('throwOnError() throws the same error as a PostgrestError', async () => {
    await assert.rejects(
      async () => supabase.rpc('join_group', { code: 'not-a-code' }).throwOnError(),
      (err) => {
        assert.equal(err.name, 'PostgrestError');
        assert.equal(err.code, 'PT400');
        assert.equal(err.message, 'The invite code is malformed.');
        return true;
      });
  });

  // Last: it leaves the group (the only member, so the group goes too).
  test('leave_group, a void function: data null, error null, status 204', async () => {
    const { data, error, status, statusText } = await supabase.rpc(
      'leave_group', { group_id: group.id });
    assert.equal(error, null);
    assert.equal(data, null);
    assert.equal(status, 204);
    assert.equal(statusText, 'No Content');
    const after = await supabase.rpc('my_groups');
    assert.equal(after.error, null);
    assert.ok(Array.isArray(after.data));
    assert.equal(after.data.filter((g) => g.id === group.id).length, 0);
  });
});

describe('supabase-js rpc with the anon key', () => {
  const anon = clientFor(ANON_TOKEN);

  test('my_groups is refused with 401 and 42501', async () => {
    const { data, error, status } = await anon.rpc('my_groups');
    assert.equal(status, 401);
    assert.equal(data, null);
    assert.deepEqual(Object.keys(error).sort(), ERROR_KEYS);
    assert.equal(error.code, '42501');
    // PostgreSQL's own message, as PostgREST passes it on.
    assert.equal(error.message, 'permission denied for function my_groups');
  });

  test('the anon key is sent as apikey and as the bearer token', async () => {
    await anon.rpc('my_groups');
    const { url, headers } = sent.at(-1);
    assert.equal(url.origin, new URL(GATEWAY_URL).origin);
    assert.equal(headers.get('apikey'), ANON_TOKEN);
    assert.equal(headers.get('authorization'), `Bearer ${ANON_TOKEN}`);
  });
});
