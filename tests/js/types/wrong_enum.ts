// A value outside an argument's documented enum (@arg locale enum=en,ca): the
// mail speaks English and Catalan only.
import { createClient } from "@supabase/supabase-js"
import type { Database } from "./database.types"

const supabase = createClient<Database>("http://127.0.0.1:8000", "anon-key")

export const french = supabase.rpc("update_profile", { locale: "fr" })
