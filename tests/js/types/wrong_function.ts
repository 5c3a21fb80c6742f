// A function the api does not have.
import { createClient } from "@supabase/supabase-js"
import type { Database } from "./database.types"

const supabase = createClient<Database>("http://127.0.0.1:8000", "anon-key")

export const left = supabase.rpc("leave_groups", { group_id: "g" })
