// Compiles against the generated types: names, argument types and results of
// several api functions through createClient<Database>.
import { createClient } from "@supabase/supabase-js"
import type { Database, Json } from "./database.types"

const supabase = createClient<Database>("http://127.0.0.1:8000", "anon-key")

export async function flow(groupId: string, eventId: string, friendIds: string[]) {
  const created = await supabase.rpc("create_group", { name: "Climbers" })
  const group: Json | null = created.data

  // Optional arguments (defaults in SQL) may be left out.
  const invite = await supabase.rpc("create_group_invite", { group_id: groupId, max_uses: 10 })
  const joined = await supabase.rpc("join_group", { code: "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b" })

  // No arguments at all.
  const me = await supabase.rpc("me")
  const unread = await supabase.rpc("mark_notifications_read")

  // boolean, arrays, void.
  const allowed = await supabase.rpc("can_subscribe", { topic: `group:${groupId}` })
  const mayListen: boolean | null = allowed.data
  const liked = await supabase.rpc("like_event", { event_id: eventId, member_ids: friendIds })
  const left = await supabase.rpc("leave_group", { group_id: groupId })
  const nothing: undefined | null = left.data

  const event = await supabase.rpc("create_event", {
    title: "Spring open",
    starts_at: new Date().toISOString(),
    capacity: 64,
  })
  // Answers named by @returns are typed, enums as unions.
  const role: "owner" | "member" | undefined = joined.data?.membership.role
  // An enum argument takes one of its values.
  const profile = await supabase.rpc("update_profile", { locale: "ca" })
  return [group, invite.data, joined.data, me.data, unread.data, mayListen, liked.data,
          nothing, event.error?.message, profile.data, role]
}
