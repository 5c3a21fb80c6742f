// /events/{id}/groups: the authors' approval queue. Pending like groups with
// their members' names and approvals against the threshold, Approve and
// Reject; kept current through the realtime stream (topic event:{id}, which
// only the event's authors may join) when another author acts. Anyone else
// sees the same "not found" as for an event that does not exist. The queue
// comes a page at a time (pending groups first, then the decided ones, last
// decided first): "More" reads the next page, the one the Link header names;
// a reload reads again as many pages as the person has asked for, no more.
import { busy, commonError, el, formatDate, message, rpc, session, signInPrompt, start, t } from "./common.js";
import { subscribe } from "./realtime.js";

const eventId = document.getElementById("queue").dataset.eventId;
const title = document.getElementById("queue-title");
const lead = document.getElementById("queue-event");
const status = document.getElementById("queue-status");
const live = document.getElementById("live");
const pendingSection = document.getElementById("pending-section");
const decidedSection = document.getElementById("decided-section");
const more = document.getElementById("more");

function notFound() {
  title.textContent = t("not_found_title");
  document.title = `${t("not_found_title")} · Joinery`;
  lead.textContent = "";
  live.textContent = "";
  status.replaceChildren(message("error", t("event_not_found")));
  pendingSection.hidden = true;
  decidedSection.hidden = true;
  more.hidden = true;
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
  more.hidden = queue.next === null;
}

/** The arguments of the next page, from a Link header `<?query>; rel="next"`, or null. */
function nextArgs(link) {
  const match = /^<\?([^>]*)>; rel="next"$/.exec(link || "");
  if (!match) return null;
  const args = Object.fromEntries(new URLSearchParams(match[1]));
  args.max_rows = Number(args.max_rows);
  return args;
}

let pages = 1; // the pages the person has asked for: the first, and one per "More"
let queue = null; // {event, groups, next}: what is shown, next = the next page's arguments

/**
 * Reads `count` pages from `args` on (fewer when the queue ends), adding their
 * groups to `into`: a group read again (decided since an earlier page showed it
 * pending) keeps its latest state. Answers the failed result, or null.
 */
async function readPages(args, count, into) {
  let read = 0;
  let following = args;
  while (following && read < count) {
    const result = await rpc("event_like_groups", following);
    if (result.status !== 200) return result;
    into.event = result.body.event;
    for (const group of result.body.groups) {
      into.groups.delete(group.id);
      into.groups.set(group.id, group);
    }
    following = nextArgs(result.link);
    read += 1;
  }
  into.next = following;
  return null;
}

function failed(result) {
  if (result.status === 404) {
    notFound();
  } else {
    status.replaceChildren(message("error", commonError(result)));
  }
  return false;
}

function show(read) {
  queue = { event: read.event, groups: [...read.groups.values()], next: read.next };
  render(queue);
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
      const read = { event: null, groups: new Map(), next: null };
      const problem = await readPages({ event_id: eventId }, pages, read);
      if (problem) return failed(problem);
      show(read);
    } while (again);
    return true;
  })();
  try {
    return await loading;
  } finally {
    loading = null;
  }
}

/** "More": the next page, added to what is shown. */
async function loadMore() {
  if (loading) await loading;
  if (!queue || !queue.next) return;
  const read = { event: queue.event, groups: new Map(queue.groups.map((g) => [g.id, g])),
    next: null };
  const problem = await readPages(queue.next, 1, read);
  if (problem) {
    failed(problem);
    return;
  }
  pages += 1;
  show(read);
}

more.addEventListener("click", busy([more], () => loadMore()));

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
