// Shared by every page: the text catalogue, the session (as a Supabase frontend
// keeps it), calls to the API and small DOM helpers. No page acts on load:
// everything that changes data runs from a click handler.

const body = document.body;
export const lang = body.dataset.lang || "en";
let text = {};

export async function loadText() {
  const response = await fetch(`/pages/text/${lang}.json`);
  text = await response.json();
  return text;
}

/** A catalogue text with {name} placeholders filled in. */
export function t(key, vars = {}) {
  const template = text[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

// ---- session ---------------------------------------------------------------

const STORAGE_KEY = `sb-${location.hostname.split(".")[0]}-auth-token`;

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(part), (c) =>
      "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

function live(token) {
  const claims = typeof token === "string" ? decodeClaims(token) : null;
  return claims && (!claims.exp || claims.exp * 1000 > Date.now()) ? claims : null;
}

// A sign-in this page started: a nonce kept in this browser before going to the
// sign-in page, which echoes it back as `state` beside the token. Used once.
const STATE_KEY = "joinery-sign-in-state";
const STATE_MS = 15 * 60 * 1000;
let pageState;

function signInState() {
  if (!pageState) {
    pageState = Array.from(crypto.getRandomValues(new Uint8Array(16)),
      (b) => b.toString(16).padStart(2, "0")).join("");
  }
  return pageState;
}

function rememberState() {
  localStorage.setItem(STATE_KEY, JSON.stringify({ state: signInState(), until: Date.now() + STATE_MS }));
}

function startedHere(given) {
  if (!given) return false;
  let kept = null;
  try { kept = JSON.parse(localStorage.getItem(STATE_KEY) || "null"); } catch { kept = null; }
  localStorage.removeItem(STATE_KEY);
  return Boolean(kept) && kept.state === given && kept.until > Date.now();
}

function fromFragment() {
  // A Supabase Auth redirect: #access_token=...&expires_in=...&token_type=bearer
  if (!location.hash.includes("access_token=")) return null;
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("access_token");
  // Take the token out of the address bar (and so out of history and bookmarks).
  history.replaceState(history.state, "", location.pathname + location.search);
  if (!token) return null;
  const claims = decodeClaims(token);
  if (!claims) return null;
  const session = {
    access_token: token,
    token_type: params.get("token_type") || "bearer",
    expires_in: Number(params.get("expires_in") || 3600),
    expires_at: claims.exp,
    refresh_token: params.get("refresh_token") || "",
    user: { id: claims.sub, email: claims.email || "" },
  };
  return { session, claims, state: params.get("state") };
}

function accountName(claims) {
  return claims.email || claims.sub || "?";
}

/**
 * A token in the address bar becomes the session, except that it replaces the
 * session of someone else only when this page started the sign-in (its nonce came
 * back) or the person says so: a link can carry anybody's token.
 */
async function takeFragment() {
  const arrived = fromFragment();
  if (!arrived) return;
  const held = fromStorage();
  const heldClaims = held ? live(held.access_token) : null;
  const ours = startedHere(arrived.state);
  if (!ours && heldClaims && heldClaims.sub !== arrived.claims.sub
      && !(await confirmSwitch(accountName(heldClaims), accountName(arrived.claims)))) {
    return;
  }
  localStorage.setItem(STORAGE_KEY, JSON.stringify(arrived.session));
  current = undefined;
}

/** Asks, in the page, whether to switch accounts; resolves with the answer. */
function confirmSwitch(held, arrived) {
  const main = document.getElementById("main") || body;
  return new Promise((resolve) => {
    const heading = el("h2", { id: "switch-heading", tabindex: "-1" }, t("switch_heading"));
    const keep = el("button", { type: "button", class: "secondary" }, t("switch_keep", { email: held }));
    const change = el("button", { type: "button" }, t("switch_change", { email: arrived }));
    const box = el("section", { class: "card switch", id: "switch", role: "alertdialog",
      "aria-modal": "false", "aria-labelledby": "switch-heading", "aria-describedby": "switch-body" },
    heading,
    el("p", { id: "switch-body" }, t("switch_body", { held, arrived })),
    el("p", { class: "muted" }, t("switch_warning", { arrived })),
    el("p", { class: "actions" }, keep, " ", change));
    // The rest of the page waits for the answer (its script waits too).
    const others = Array.from(main.children).filter((node) => !node.hidden);
    others.forEach((node) => { node.hidden = true; });
    const answer = (value) => () => {
      box.remove();
      others.forEach((node) => { node.hidden = false; });
      resolve(value);
    };
    keep.addEventListener("click", answer(false));
    change.addEventListener("click", answer(true));
    main.prepend(box);
    heading.focus();
  });
}

function fromStorage() {
  // supabase-js keeps its session under sb-<project ref>-auth-token.
  const keys = [STORAGE_KEY, ...Object.keys(localStorage).filter(
    (k) => k !== STORAGE_KEY && /^sb-.+-auth-token$/.test(k))];
  for (const key of keys) {
    try {
      const stored = JSON.parse(localStorage.getItem(key) || "null");
      const session = stored && (stored.currentSession || stored);
      if (session && typeof session.access_token === "string") return session;
    } catch {
      // not a session: ignore
    }
  }
  return null;
}

let current;

/** {token, claims} of the signed-in person, or null. */
export function session() {
  if (current !== undefined) return current;
  const found = fromStorage();
  const claims = found ? live(found.access_token) : null;
  current = claims ? { token: found.access_token, claims } : null;
  return current;
}

export function signOut() {
  for (const key of Object.keys(localStorage)) {
    if (/^sb-.+-auth-token$/.test(key)) localStorage.removeItem(key);
  }
  current = null;
  location.reload();
}

export function signInHref() {
  const base = body.dataset.signInUrl;
  if (!base) return "";
  const url = new URL(base, location.origin);
  url.searchParams.set("redirect_to", location.origin === url.origin
    ? location.pathname + location.search : location.href);
  url.searchParams.set("state", signInState());
  return url.origin === location.origin ? url.pathname + url.search : url.href;
}

/** A link to the sign-in page that keeps this page's nonce when followed. */
function signInLink(attrs, label) {
  const link = el("a", { href: signInHref(), ...attrs }, label);
  link.addEventListener("click", rememberState);
  return link;
}

/** The session bar: who is signed in, or a Sign in link. */
export function renderSession() {
  const box = document.getElementById("session");
  if (!box) return;
  box.replaceChildren();
  const who = session();
  if (who) {
    box.append(el("span", {}, t("signed_in_as", { email: who.claims.email || who.claims.sub })));
    const out = el("button", { type: "button", class: "link" }, t("sign_out"));
    out.addEventListener("click", signOut);
    box.append(" ", out);
  } else {
    if (body.dataset.signInUrl) box.append(signInLink({ id: "sign-in" }, t("sign_in")));
  }
}

/** The prompt shown in place of a preview when nobody is signed in. */
export function signInPrompt() {
  return [
    el("p", {}, t("sign_in_needed")),
    body.dataset.signInUrl ? el("p", {}, signInLink({ class: "button" }, t("sign_in")))
      : el("p", {}, t("sign_in_elsewhere")),
  ];
}

// ---- API -------------------------------------------------------------------

/** POST /rest/v1/rpc/{fn}: {status, body, retryAfter, link} (link: the Link header of a page). */
export async function rpc(fn, args = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const who = session();
  if (who) headers.Authorization = `Bearer ${who.token}`;
  let response;
  try {
    response = await fetch(`/rest/v1/rpc/${fn}`, {
      method: "POST", headers, body: JSON.stringify(args), credentials: "omit",
      cache: "no-store", referrerPolicy: "no-referrer",
    });
  } catch {
    return { status: 0, body: null, retryAfter: null, link: null };
  }
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch { data = null; }
  }
  return { status: response.status, body: data, retryAfter: response.headers.get("Retry-After"),
    link: response.headers.get("Link") };
}

/** The message for an answer no page handles itself, or null on success. */
export function commonError(result) {
  if (result.status >= 200 && result.status < 300) return null;
  if (result.status === 0) return t("network_error");
  if (result.status === 401) return t("session_expired");
  if (result.status === 429) return t("rate_limited", { seconds: result.retryAfter || "60" });
  return t("error_generic", { status: result.status });
}

// ---- DOM -------------------------------------------------------------------

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function formatDate(value) {
  if (!value) return t("never");
  return new Intl.DateTimeFormat(lang === "ca" ? "ca-ES" : "en-GB",
    { dateStyle: "long", timeStyle: "short" }).format(new Date(value));
}

/** Facts as a definition list: [[label, value], ...]. */
export function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

export function message(kind, textValue) {
  return el("p", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, textValue);
}

/** Runs `action` once per click, with the buttons disabled meanwhile. */
export function busy(buttons, action) {
  return async (event) => {
    event.preventDefault();
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await action();
    } finally {
      buttons.forEach((b) => { if (b.isConnected) b.disabled = false; });
    }
  };
}

export async function start() {
  await loadText();
  await takeFragment();
  session();
  renderSession();
}

if (import.meta.url.endsWith("/common.js")) {
  // Pages whose only script is this one (sign-in, not found) still show the session.
  const self = document.querySelector('script[type="module"][src$="/common.js"]');
  if (self) start();
}
