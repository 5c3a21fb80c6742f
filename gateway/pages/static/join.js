// /join?code=...: a group invite code. The preview (counted as a join attempt,
// as the API documents) shows the group; only the Join click joins.
import {
  busy, commonError, el, facts, formatDate, message, rpc, session, signInPrompt, start, t,
} from "./common.js";

const box = document.getElementById("group");
const code = box.dataset.code.trim();

function failure(result) {
  const reason = result.body?.details;
  if ([400, 404, 410].includes(result.status) && reason) {
    const key = `group_code_${reason}`;
    if (t(key) !== key) return t(key);
  }
  return commonError(result);
}

async function main() {
  await start();
  if (!code) {
    box.hidden = true;
    return;
  }
  if (!session()) {
    box.replaceChildren(...signInPrompt());
    return;
  }
  const preview = await rpc("preview_group_invite", { code });
  if (preview.status !== 200) {
    box.replaceChildren(message("error", failure(preview)));
    return;
  }
  const p = preview.body;
  const join = el("button", { type: "button", id: "join" }, t("join_button"));
  join.addEventListener("click", busy([join], async () => {
    const result = await rpc("join_group", { code });
    box.replaceChildren(result.status === 200
      ? message("success", t("joined", { group: result.body.group.name }))
      : message("error", failure(result)));
  }));
  box.replaceChildren(
    el("h2", {}, p.group.name),
    facts([
      [t("group_members"), String(p.group.member_count)],
      [t("group_uses_left"), p.uses_left === null ? t("unlimited") : String(p.uses_left)],
      [t("group_expires"), formatDate(p.expires_at)],
    ]),
    el("div", { class: "actions" }, join),
  );
}

main();
