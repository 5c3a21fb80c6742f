// @supabase/supabase-js realtime channels, unchanged, against a running joinery gateway.
// Run by tests/test_supabase_js_realtime.py (not by node's default test glob), which
// starts the gateways and makes users:
//   GATEWAY_URL, SHORT_IDLE_URL (a gateway whose REALTIME_IDLE_TIMEOUT is 2 s),
//   USERS (JSON [{id, token}, ...]), JWT_SECRET (to mint expired and fresh tokens).
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, describe, test } from 'node:test';

import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through tests/test_supabase_js_realtime.py`);
  return value;
}

const GATEWAY_URL = required('GATEWAY_URL');
const SHORT_IDLE_URL = required('SHORT_IDLE_URL');
const JWT_SECRET = required('JWT_SECRET');
const USERS = JSON.parse(required('USERS'));

// Node.js < 22 has no WebSocket: Supabase's documented answer is the ws package.
const transport = globalThis.WebSocket ? {} : { transport: ws };
const clients = [];

function clientFor(token, { url = GATEWAY_URL, realtime = {} } = {}) {
  const client = createClient(url, token, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { ...transport, ...realtime },
  });
  clients.push(client);
  return client;
}

after(async () => {
  await Promise.all(clients.map((c) => c.realtime.disconnect()));
});

let next = 0;
function takeUsers(count) {
  const taken = USERS.slice(next, next + count);
  next += count;
  assert.equal(taken.length, count, 'not enough users in USERS');
  return taken;
}

function mint(sub, expiresIn) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = part({ alg: 'HS256', typ: 'JWT' });
  const body = part({ sub, role: 'authenticated', iat: now, exp: now + expiresIn });
  const signature = createHmac('sha256', JWT_SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

async function rpc(user, fn, args = {}, url = GATEWAY_URL) {
  const response = await fetch(`${url}/rest/v1/rpc/${fn}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${user.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(args),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${fn}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// One author (threshold 1), a creator and `friends` friends: one approval approves it.
async function pendingGroup(friends = 1) {
  const [author, creator, ...pals] = takeUsers(2 + friends);
  const event = await rpc(author, 'create_event', { title: 'Live' });
  for (const pal of pals) {
    await rpc(creator, 'request_friend', { user_id: pal.id });
    await rpc(pal, 'accept_friend', { user_id: creator.id });
  }
  const group = await rpc(creator, 'like_event',
    { event_id: event.id, member_ids: pals.map((p) => p.id) });
  return { id: group.id, eventId: event.id, author, creator, friends: pals };
}

async function approve(group) {
  const decided = await rpc(group.author, 'approve_like_group', { group_id: group.id });
  assert.equal(decided.status, 'approved');
  return decided;
}

// Subscribes a private channel; resolves on SUBSCRIBED, rejects with the error
// supabase-js reports on CHANNEL_ERROR. Broadcasts are collected in `received`.
function subscribe(client, topic) {
  const received = [];
  const system = [];
  const channel = client.channel(topic, { config: { private: true } })
    .on('broadcast', { event: '*' }, (message) => received.push(message))
    .on('system', {}, (message) => system.push(message));
  const states = [];
  const subscribed = new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      states.push(status);
      if (status === 'SUBSCRIBED') resolve();
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') reject(err ?? new Error(status));
    });
  });
  return { channel, received, system, states, subscribed };
}

async function waitFor(check, ms, what) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`not within ${ms} ms: ${what}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe('supabase-js private broadcast channels on the gateway', () => {
  for (const vsn of ['2.0.0', '1.0.0']) {
    test(`a member's group channel receives group_approved (vsn ${vsn})`, async () => {
      const group = await pendingGroup();
      const member = group.friends[0];
      const client = clientFor(member.token, { realtime: { vsn } });
      assert.equal(client.realtime.vsn, vsn);
      const sub = subscribe(client, `group:${group.id}`);
      await sub.subscribed;
      const decided = await approve(group);
      await waitFor(() => sub.received.length === 1, 2000, 'the broadcast');
      assert.deepEqual(sub.received, [{
        type: 'broadcast',
        event: 'group_approved',
        payload: {
          type: 'group_approved', topic: `group:${group.id}`, group_id: group.id,
          chat_id: decided.chat_id,
        },
      }]);
      assert.ok(client.realtime.endpointURL().includes(`vsn=${vsn}`));
    });
  }

  test("a user's own channel gets their notifications", async () => {
    const group = await pendingGroup();
    const member = group.friends[0];
    const client = clientFor(member.token);
    const sub = subscribe(client, `user:${member.id}`);
    await sub.subscribed;
    const decided = await approve(group);
    await waitFor(() => sub.received.length === 1, 2000, 'the notification');
    const [message] = sub.received;
    assert.equal(message.event, 'group_approved');
    const notes = await rpc(member, 'my_notifications');
    assert.deepEqual(message.payload, {
      type: 'group_approved', topic: `user:${member.id}`, group_id: group.id,
      event_id: group.eventId, chat_id: decided.chat_id,
      notification_id: notes.find((n) => n.type === 'group_approved').id,
    });
  });

  test("a stranger's join is refused with a reason", async () => {
    const group = await pendingGroup();
    const [stranger] = takeUsers(1);
    const client = clientFor(stranger.token);
    const sub = subscribe(client, `group:${group.id}`);
    await assert.rejects(sub.subscribed, (err) => {
      assert.equal(err.message, 'Unauthorized: You do not have permissions to read from '
        + `this Channel topic: group:${group.id}`);
      return true;
    });
    // Refused channels do not take the socket down: the same client joins its own topic.
    const own = subscribe(client, `user:${stranger.id}`);
    await own.subscribed;
  });

  test('an expired token is refused', async () => {
    const [user] = takeUsers(1);
    const client = clientFor(mint(user.id, -60));
    const sub = subscribe(client, `user:${user.id}`);
    await assert.rejects(sub.subscribed, (err) => {
      assert.match(err.message, /^InvalidJWTToken: Token has expired \d+ seconds ago$/);
      return true;
    });
  });

  test('presence and client broadcasts are refused; the channel stays joined', async () => {
    const group = await pendingGroup();
    const member = group.friends[0];
    const client = clientFor(member.token);
    const received = [];
    const channel = client.channel(`group:${group.id}`,
      { config: { private: true, broadcast: { ack: true } } })
      .on('broadcast', { event: '*' }, (message) => received.push(message));
    await new Promise((resolve, reject) => channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve();
      else if (err) reject(err);
    }));
    // A client broadcast goes out as a binary frame (vsn 2.0.0): the reply is an error.
    assert.equal(await channel.send({ type: 'broadcast', event: 'hello', payload: { a: 1 } }),
      'error');
    assert.equal(await channel.track({ online: true }), 'error');
    assert.equal(channel.state, 'joined');
    const decided = await approve(group);
    await waitFor(() => received.length === 1, 2000, 'the broadcast after the refusals');
    assert.equal(received[0].payload.chat_id, decided.chat_id);
  });

  test('setAuth with a new token keeps the channel', async () => {
    const group = await pendingGroup();
    const member = group.friends[0];
    const client = clientFor(member.token);
    const sub = subscribe(client, `group:${group.id}`);
    await sub.subscribed;
    await client.realtime.setAuth(mint(member.id, 7200));
    await sleep(300);
    assert.equal(sub.channel.state, 'joined');
    assert.deepEqual(sub.system, []);
    await approve(group);
    await waitFor(() => sub.received.length === 1, 2000, 'the broadcast after setAuth');
    assert.equal(sub.received[0].event, 'group_approved');
  });

  test('setAuth with an expired token ends the channel with a system message', async () => {
    const [user] = takeUsers(1);
    const client = clientFor(user.token);
    const sub = subscribe(client, `user:${user.id}`);
    await sub.subscribed;
    await client.realtime.setAuth(mint(user.id, -60));
    await waitFor(() => sub.states.includes('CLOSED'), 2000, 'the channel to close');
    assert.equal(sub.system.length, 1);
    assert.equal(sub.system[0].extension, 'system');
    assert.equal(sub.system[0].status, 'error');
    assert.match(sub.system[0].message, /^InvalidJWTToken: Token has expired \d+ seconds ago$/);
    assert.equal(sub.channel.state, 'closed');
  });

  test('heartbeats keep an idle socket open past the idle limit', async () => {
    const [user] = takeUsers(1);
    // Heartbeats every 0.5 s on a gateway that closes sockets silent for 2 s.
    const beating = clientFor(user.token, { url: SHORT_IDLE_URL, realtime: { heartbeatIntervalMs: 500 } });
    const closes = [];
    beating.realtime.socketAdapter.onClose((event) => closes.push(event.code));
    const sub = subscribe(beating, `user:${user.id}`);
    await sub.subscribed;
    // The control: a socket with no heartbeat in time is closed by the server.
    const quiet = clientFor(user.token, { url: SHORT_IDLE_URL, realtime: { heartbeatIntervalMs: 60000 } });
    const quietCloses = [];
    quiet.realtime.socketAdapter.onClose((event) => quietCloses.push([event.code, event.reason]));
    await subscribe(quiet, `user:${user.id}`).subscribed;
    await sleep(5000);
    assert.deepEqual(closes, []);
    assert.equal(sub.channel.state, 'joined');
    assert.ok(beating.realtime.isConnected());
    assert.deepEqual(quietCloses[0], [1000, 'idle timeout']);
  });

  test('200 sockets with one channel each all receive one approval', async () => {
    const group = await pendingGroup(9);
    const members = [group.creator, ...group.friends];
    const subs = [];
    for (let i = 0; i < 200; i += 1) {
      const member = members[i % members.length];
      subs.push(subscribe(clientFor(member.token), `group:${group.id}`));
    }
    await Promise.all(subs.map((s) => s.subscribed));
    const sockets = new Set(subs.map((s) => s.channel.socket));
    assert.equal(sockets.size, 200);
    const decided = await approve(group);
    const answered = Date.now();
    await waitFor(() => subs.every((s) => s.received.length === 1), 10000,
      'every socket to receive the approval');
    console.log(`figure: 200 sockets all received the approval within ${Date.now() - answered} ms `
      + 'of its HTTP answer (polled every 20 ms)');
    for (const s of subs) {
      assert.equal(s.received[0].event, 'group_approved');
      assert.equal(s.received[0].payload.chat_id, decided.chat_id);
    }
  });
});
