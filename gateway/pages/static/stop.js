// /invite/stop?token=...: stop invitation mail to an address, on a click only.
import { busy, commonError, message, rpc, start, t } from "./common.js";

const token = new URLSearchParams(location.search).get("token") || "";
const button = document.getElementById("stop-button");
const result = document.getElementById("stop-result");

async function main() {
  await start();
  if (!button) return;
  button.addEventListener("click", busy([button], async () => {
    const answer = await rpc("stop_invitations", { token });
    if (answer.status === 200) {
      button.hidden = true;
      result.replaceChildren(message("success", t("stopped")));
    } else {
      result.replaceChildren(message("error",
        answer.status === 404 || answer.status === 400 ? t("stop_unknown") : commonError(answer)));
    }
  }));
}

main();
