// /invite/accept?code=...: preview (no token, nothing answered), then Accept or
// Decline on a person's click only.
import {
  busy, commonError, el, facts, formatDate, message, rpc, session, signInPrompt, signOut, start, t,
} from "./common.js";

const box = document.getElementById("invite");
const code = box.dataset.code.trim();

// Reasons (the error body's `details`) with their own message.
const REASONS = {
  own_invite: () => t("own_invite"),
  other_addressee: () => t("other_addressee", { email: session()?.claims.email || "" }),
  full: () => t("event_full"),
  deadline: () => t("deadline_passed"),
  closed: () => t("registration_closed"),
  already_registered: () => t("already_registered"),
};

function failure(result) {
  const reason = result.body?.details;
  if (result.status === 404 || (result.status === 410 && reason !== "deadline")) {
    return t("invite_unavailable");
  }
  if (REASONS[reason]) return REASONS[reason]();
  return commonError(result);
}

function show(...nodes) {
  box.replaceChildren(...nodes);
}

/** A refusal; for the wrong account, a way to switch. */
function showFailure(result) {
  const nodes = [message("error", failure(result))];
  if (result.body?.details === "other_addressee" || result.status === 401) {
    const out = el("button", { type: "button", class: "secondary", id: "switch-account" },
      t("use_other_account"));
    out.addEventListener("click", signOut);
    nodes.push(out);
  }
  show(...nodes);
}

async function answer(kind, preview) {
  // A token is asked for only now, on the click, and kept in this function.
  const joined = await rpc("join_pair_invite", { code });
  if (joined.status !== 200) {
    showFailure(joined);
    return;
  }
  const fn = kind === "accept" ? "accept_pair_invite" : "decline_pair_invite";
  const result = await rpc(fn, { token: joined.body.token });
  if (result.status !== 200) {
    showFailure(result);
    return;
  }
  if (kind === "decline") {
    show(message("success", t("declined")));
    return;
  }
  const me = session().claims.sub;
  const rows = result.body.registrations.map((r) => el("li", {},
    el("strong", {}, r.user_id === me ? t("registration_you") : preview.inviter.display_name),
    ": ", t(`status_${r.status}`)));
  show(
    message("success", t("accepted", { inviter: preview.inviter.display_name, event: preview.event.title })),
    el("h2", {}, t("registrations_heading")),
    el("ul", { id: "registrations" }, rows),
  );
}

async function main() {
  await start();
  if (!code) {
    box.hidden = true;
    return;
  }
  if (!session()) {
    show(...signInPrompt());
    return;
  }
  const preview = await rpc("preview_pair_invite", { code });
  if (preview.status !== 200) {
    showFailure(preview);
    return;
  }
  const p = preview.body;
  const details = facts([
    [t("invite_event"), p.event.title],
    [t("invite_from"), p.inviter.display_name],
    [t("invite_expires"), formatDate(p.expires_at)],
    ...(p.event.registration_deadline
      ? [[t("invite_deadline"), formatDate(p.event.registration_deadline)]] : []),
  ]);
  if (p.own_invite) {
    show(details, message("info", t("own_invite")));
    return;
  }
  const accept = el("button", { type: "button", id: "accept" }, t("accept"));
  const decline = el("button", { type: "button", id: "decline", class: "secondary" }, t("decline"));
  const buttons = [accept, decline];
  accept.addEventListener("click", busy(buttons, () => answer("accept", p)));
  decline.addEventListener("click", busy(buttons, () => answer("decline", p)));
  show(
    el("h2", {}, t("invite_question", { inviter: p.inviter.display_name, event: p.event.title })),
    details,
    el("div", { class: "actions" }, accept, decline),
  );
}

main();
