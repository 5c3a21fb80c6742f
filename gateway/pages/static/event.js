// /events/{id}: seed 004's "register with a partner" dialog (invite by email,
// or make a code to share with a copy button), the invitations sent and
// received for this event, and revoking a sent one.
import {
  busy, commonError, el, facts, formatDate, message, rpc, session, signInPrompt, start, t,
} from "./common.js";

const eventId = document.getElementById("event").dataset.eventId;
const title = document.getElementById("event-title");
const status = document.getElementById("event-status");
const openButton = document.getElementById("open-dialog");
const dialog = document.getElementById("pair-dialog");
const dialogResult = document.getElementById("dialog-result");
const share = document.getElementById("share");

const REASONS = {
  invitee_email: "invalid_email", closed: "registration_closed", deadline: "deadline_passed",
  full: "event_full", already_registered: "already_registered",
  expired: "answer_expired", revoked: "answer_unavailable", declined: "answer_unavailable",
  accepted: "answer_unavailable", not_addressee: "answer_not_addressee",
};

function failure(result) {
  const key = REASONS[result.body?.details];
  return key ? t(key) : commonError(result);
}

function shareLink(code) {
  return `${location.origin}/invite/accept?code=${encodeURIComponent(code)}`;
}

async function copy(textValue, input) {
  try {
    await navigator.clipboard.writeText(textValue);
  } catch {
    input.select();
    document.execCommand("copy");
  }
  document.getElementById("copy-status").textContent = t("copied");
}

function showShare(code) {
  share.hidden = false;
  document.getElementById("share-code").textContent = code;
  document.getElementById("share-link").value = shareLink(code);
  document.getElementById("copy-status").textContent = "";
}

async function createInvite(email) {
  const args = { event_id: eventId };
  if (email !== null) args.invitee_email = email;
  const result = await rpc("create_pair_invite", args);
  if (result.status !== 200) {
    share.hidden = true;
    dialogResult.replaceChildren(message("error", failure(result)));
    return;
  }
  dialogResult.replaceChildren(email !== null ? message("success", t("invite_sent", { email })) : "");
  showShare(result.body.short_code);
  await refreshInvites();
}

function inviteItem(invite, sent) {
  const parts = sent
    ? [el("span", { class: "code" }, t("invite_code", { code: invite.short_code })),
      invite.invitee_email ? t("invite_to", { email: invite.invitee_email }) : null]
    : [t("invite_by", { name: invite.inviter.display_name })];
  const item = el("li", { "data-status": invite.status },
    ...parts.filter(Boolean).flatMap((p, i) => (i ? [" · ", p] : [p])),
    " · ", el("strong", {}, t(`status_${invite.status}`)),
    invite.status === "sent" ? ` · ${t("invite_until", { date: formatDate(invite.expires_at) })}` : "");
  if (sent && invite.status === "sent") {
    const revoke = el("button", { type: "button", class: "secondary small",
      "aria-label": `${t("revoke")}: ${invite.short_code}` }, t("revoke"));
    revoke.addEventListener("click", busy([revoke], async () => {
      const result = await rpc("revoke_pair_invite", { invite_id: invite.id });
      status.replaceChildren(result.status === 200
        ? message("success", t("revoked")) : message("error", commonError(result)));
      await refreshInvites();
    }));
    item.append(" ", revoke);
    if (invite.invitee_email && invite.resends < 2) item.append(" ", resendButton(invite));
  }
  if (sent && invite.reminded_at) item.append(` · ${t("reminded", { date: formatDate(invite.reminded_at) })}`);
  if (!sent && invite.status === "sent") item.append(" ", ...answerButtons(invite));
  return item;
}

// The inviter sends an emailed invitation again (at most twice; api.resend_pair_invite).
function resendButton(invite) {
  const resend = el("button", { type: "button", class: "secondary small",
    "aria-label": `${t("resend")}: ${invite.short_code}` }, t("resend"));
  resend.addEventListener("click", busy([resend], async () => {
    const result = await rpc("resend_pair_invite", { invite_id: invite.id });
    status.replaceChildren(result.status === 200
      ? message("success", t("resent", { email: invite.invitee_email }))
      : message("error", result.body?.details === "resend_limit" ? t("resend_limit") : failure(result)));
    await refreshInvites();
  }));
  return resend;
}

// A received invitation answered in place (api.answer_pair_invite): only the
// addressee, by the verified address on their token; the same rules as the link.
function answerButtons(invite) {
  const name = invite.inviter.display_name;
  const accept = el("button", { type: "button", class: "small",
    "aria-label": `${t("accept")}: ${t("invite_by", { name })}` }, t("accept"));
  const decline = el("button", { type: "button", class: "secondary small",
    "aria-label": `${t("decline")}: ${t("invite_by", { name })}` }, t("decline"));
  for (const [button, yes] of [[accept, true], [decline, false]]) {
    button.addEventListener("click", busy([accept, decline], async () => {
      const result = await rpc("answer_pair_invite", { invite_id: invite.id, accept: yes });
      status.replaceChildren(result.status === 200
        ? message("success", yes ? t("answered_accepted", { name }) : t("answered_declined"))
        : message("error", failure(result)));
      await refreshInvites();
    }));
  }
  return [accept, decline];
}

async function refreshInvites() {
  const result = await rpc("my_pair_invites");
  for (const [id, list, sent] of [["sent", result.body?.sent, true],
    ["received", result.body?.received, false]]) {
    const box = document.getElementById(id);
    const mine = (list || []).filter((i) => i.event.id === eventId);
    box.replaceChildren(...(mine.length ? mine.map((i) => inviteItem(i, sent))
      : [el("li", { class: "muted" }, t("none_yet"))]));
  }
}

async function main() {
  await start();
  if (!session()) {
    title.textContent = t("pair_register");
    status.replaceChildren(...signInPrompt());
    for (const id of ["sent", "received"]) document.getElementById(id).closest("section").hidden = true;
    return;
  }
  const event = await rpc("get_event", { event_id: eventId });
  if (event.status !== 200) {
    title.textContent = t("pair_register");
    status.replaceChildren(message("error", event.status === 404 ? t("event_not_found")
      : commonError(event)));
    return;
  }
  const e = event.body;
  title.textContent = e.title;
  document.title = `${e.title} · Joinery`;
  document.getElementById("event-facts").replaceWith(facts([
    [t("event_deadline"), e.registration_deadline ? formatDate(e.registration_deadline) : t("none")],
    [t("event_capacity"), e.capacity === null ? t("unlimited") : String(e.capacity)],
  ]));
  openButton.hidden = false;
  openButton.addEventListener("click", () => {
    dialogResult.replaceChildren();
    dialog.showModal();
  });
  const emailForm = document.getElementById("invite-email");
  emailForm.addEventListener("submit", busy([emailForm.querySelector("button")], async () => {
    await createInvite(document.getElementById("invitee-email").value.trim());
  }));
  const codeForm = document.getElementById("invite-code");
  codeForm.addEventListener("submit", busy([codeForm.querySelector("button")], async () => {
    await createInvite(null);
  }));
  const copyButton = document.getElementById("copy-link");
  copyButton.addEventListener("click", () =>
    copy(document.getElementById("share-link").value, document.getElementById("share-link")));
  await refreshInvites();
}

main();
