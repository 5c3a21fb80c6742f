// Results are typed: can_subscribe answers a boolean, not text; a missing
// required argument is refused too.
import { createClient } from "@supabase/supabase-js"
import type { Database } from "./database.types"

const supabase = createClient<Database>("http://127.0.0.1:8000", "anon-key")

export async function check(groupId: string) {
  const allowed = await supabase.rpc("can_subscribe", { topic: `group:${groupId}` })
  const text: string | null = allowed.data
  const invite = await supabase.rpc("create_group_invite", { max_uses: 10 })
  return [text, invite.data]
}
