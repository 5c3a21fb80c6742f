// /: the index. In development, a signed-in person can create an event here
// (on a click) and go on to its page.
import { busy, commonError, message, rpc, session, start, t } from "./common.js";

async function main() {
  await start();
  const form = document.getElementById("create-event");
  if (!form || !session()) return;
  form.hidden = false;
  const button = form.querySelector("button");
  const result = document.getElementById("create-event-result");
  form.addEventListener("submit", busy([button], async () => {
    const data = new FormData(form);
    const deadline = data.get("registration_deadline");
    const answer = await rpc("create_event", {
      title: data.get("title"),
      registration_deadline: deadline ? new Date(deadline).toISOString() : null,
      capacity: data.get("capacity") ? Number(data.get("capacity")) : null,
    });
    if (answer.status === 200) {
      location.assign(`/events/${answer.body.id}`);
    } else {
      result.replaceChildren(message("error", answer.body?.message || commonError(answer)));
    }
  }));
}

main();
