// Log in: POST the name and password as JSON (a cross-site form cannot), then go on.
import { api, boot, clearProblems, showProblem } from "./common.js";

const form = document.getElementById("login-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblems(form);
  const body = { name: form.elements.name.value.trim(), password: form.elements.password.value };
  try {
    await api("POST", "/api/v1/session", body, { csrf: false });  // no session yet: nothing to forge
    location.assign(boot.next || "/console/warnings");
  } catch (err) {
    showProblem(form, err);
    form.elements.password.value = "";
  }
});
