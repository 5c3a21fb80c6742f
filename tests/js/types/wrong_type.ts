// Arguments of the wrong type: max_uses is an integer, not text; member_ids is
// an array of uuids, not one.
import { createClient } from "@supabase/supabase-js"
import type { Database } from "./database.types"

const supabase = createClient<Database>("http://127.0.0.1:8000", "anon-key")

export const invite = supabase.rpc("create_group_invite", { group_id: "g", max_uses: "10" })
export const liked = supabase.rpc("like_event", { event_id: "e", member_ids: "m" })
