// /docs: Swagger UI (served by this gateway from the installed package) over
// /openapi.json. No validator badge: it would call another origin.
import { start } from "./common.js";

start();
window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: false,
  tryItOutEnabled: false,
});
