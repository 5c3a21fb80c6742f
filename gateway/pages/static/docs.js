// /docs: Swagger UI (served by this gateway from the installed package) over
// /openapi.json. No validator badge: it would call another origin. "Try it out"
// sends the signed-in person's token unless one was given with Authorize.
import { session, start } from "./common.js";

start();
window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: false,
  requestInterceptor: (request) => {
    const who = session();
    if (who && !request.headers.Authorization) request.headers.Authorization = `Bearer ${who.token}`;
    return request;
  },
});
