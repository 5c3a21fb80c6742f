// supabase-js across a gateway restart, driven line by line by
// tests/test_supabase_js_realtime.py: prints SUBSCRIBED each time the channel is
// (re)joined, and BROADCAST <json> for the first broadcast, then exits.
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

const { GATEWAY_URL, USER_TOKEN, TOPIC } = process.env;
const transport = globalThis.WebSocket ? {} : { transport: ws };
const client = createClient(GATEWAY_URL, USER_TOKEN, {
  auth: { persistSession: false, autoRefreshToken: false },
  realtime: { ...transport },
});
client.channel(TOPIC, { config: { private: true } })
  .on('broadcast', { event: '*' }, async (message) => {
    console.log(`BROADCAST ${JSON.stringify(message)}`);
    await client.realtime.disconnect();
    process.exit(0);
  })
  .subscribe((status, err) => console.log(err ? `${status} ${err.message}` : status));
setTimeout(() => { console.log('GAVE UP'); process.exit(1); }, 60000);
