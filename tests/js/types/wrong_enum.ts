// Enums from the docblocks: a value outside an argument's (@arg locale
// enum=en,ca), and an answer's status read as if it had fewer values (@returns).
import { createClient } from "@supabase/supabase-js"
import type { Database } from "./database.types"

const supabase = createClient<Database>("http://127.0.0.1:8000", "anon-key")

export const french = supabase.rpc("update_profile", { locale: "fr" })

export async function decided(eventId: string) {
  const liked = await supabase.rpc("like_event", { event_id: eventId })
  const status: "pending" | "approved" | undefined = liked.data?.status
  return status
}
