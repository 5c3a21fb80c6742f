// /events/{id}/groups: the authors' approval queue. Pending like groups with
// their members' names and approvals against the threshold, Approve and
// Reject; kept current through the realtime stream (topic event:{id}, which
// only the event's authors may join) when another author acts. Anyone else
// sees the same "not found" as for an event that does not exist.
import { busy, commonError, el, formatDate, message, rpc, session, signInPrompt, start, t } from "./common.js";
import { subscribe } from "./realtime.js";

const eventId = document.getElementById("queue").dataset.eventId;
const title = document.getElementById("queue-title");
const lead = document.getElementById("queue-event");
const status = document.getElementById("queue-status");
const live = document.getElementById("live");
const pendingSection = document.getElementById("pending-section");
const decidedSection = document.getElementById("decided-section");

function notFound() {
  title.textContent = t("not_found_title");
  document.title = `${t("not_found_title")} · Joinery`;
  lead.textContent = "";
  live.textContent = "";
  status.replaceChildren(message("error", t("event_not_found")));
  pendingSection.hidden = true;
  decidedSection.hidden = true;
}

async function decide(group, fn, button) {
  const result = await rpc(fn, { group_id: group.id });
  if (result.status !== 200) {
    status.replaceChildren(message("error", result.status === 400 ? t("queue_already_decided")
      : commonError(result)));
  } else {
    status.replaceChildren();
  }
  await load();
  button.focus?.();
}

function groupItem(group) {
  const names = group.members.map((m) => m.display_name);
  const item = el("li", { "data-group-id": group.id, "data-status": group.status },
    el("h3", {}, t("queue_group_of", { name: names[0] || "?" })),
    el("p", { class: "members" }, t("queue_members", { names: names.join(", "), count: names.length })),
    el("p", { class: "tally" }, t("queue_approvals", {
      received: group.approvals_received, needed: group.approvals_needed })));
  if (group.status === "pending") {
    const approve = el("button", { type: "button", class: "approve",
      "aria-label": `${t("queue_approve")}: ${t("queue_group_of", { name: names[0] || "?" })}` },
    t("queue_approve"));
    const reject = el("button", { type: "button", class: "secondary reject",
      "aria-label": `${t("queue_reject")}: ${t("queue_group_of", { name: names[0] || "?" })}` },
    t("queue_reject"));
    if (group.approved_by_me) {
      approve.disabled = true;
      item.append(el("p", { class: "muted" }, t("queue_you_approved")));
    }
    approve.addEventListener("click", busy([approve, reject], () => decide(group, "approve_like_group", approve)));
    reject.addEventListener("click", busy([approve, reject], () => decide(group, "reject_like_group", reject)));
    item.append(el("div", { class: "actions" }, approve, reject));
  } else if (group.status === "approved") {
    item.append(el("p", { class: "decision approved" },
      el("strong", {}, t("queue_status_approved")), " · ",
      t("queue_chat", { chat: group.chat_id || "" })));
    item.append(el("p", { class: "muted" }, formatDate(group.decided_at)));
  } else {
    item.append(el("p", { class: "decision rejected" }, el("strong", {}, t("queue_status_rejected"))));
    item.append(el("p", { class: "muted" }, formatDate(group.decided_at)));
  }
  return item;
}

function render(queue) {
  title.textContent = t("queue_title");
  lead.textContent = t("queue_event", { event: queue.event.title });
  document.title = `${t("queue_title")}: ${queue.event.title} · Joinery`;
  const pending = queue.groups.filter((g) => g.status === "pending");
  const decided = queue.groups.filter((g) => g.status !== "pending");
  pendingSection.hidden = false;
  decidedSection.hidden = decided.length === 0;
  document.getElementById("pending").replaceChildren(...(pending.length ? pending.map(groupItem)
    : [el("li", { class: "muted" }, t("queue_none_pending"))]));
  document.getElementById("decided").replaceChildren(...decided.map(groupItem));
}

let loading = null;
let again = false;

/** Reads the queue again; calls arriving meanwhile make one more read after it. */
async function load() {
  if (loading) {
    again = true;
    return loading;
  }
  loading = (async () => {
    do {
      again = false;
      const result = await rpc("event_like_groups", { event_id: eventId });
      if (result.status === 404) {
        notFound();
        return false;
      }
      if (result.status !== 200) {
        status.replaceChildren(message("error", commonError(result)));
        return false;
      }
      render(result.body);
    } while (again);
    return true;
  })();
  try {
    return await loading;
  } finally {
    loading = null;
  }
}

async function main() {
  await start();
  const who = session();
  if (!who) {
    status.replaceChildren(...signInPrompt());
    return;
  }
  if (!(await load())) return;
  subscribe(`event:${eventId}`, who.token, () => load(), (state) => {
    live.textContent = t(`queue_live_${state}`);
    document.getElementById("queue").dataset.live = state;
    if (state === "live") load();
  });
}

main();
