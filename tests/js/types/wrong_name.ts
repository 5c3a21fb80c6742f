// Argument names that join_group does not have: a misspelling of `code`, and
// another name altogether.
import { createClient } from "@supabase/supabase-js"
import type { Database } from "./database.types"

const supabase = createClient<Database>("http://127.0.0.1:8000", "anon-key")

export const misspelt = supabase.rpc("join_group", { cod: "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b" })
export const other = supabase.rpc("join_group", { invite: "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b" })
