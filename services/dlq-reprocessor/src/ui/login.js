"use strict";
document.getElementById("login").onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch("/v1/session", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Causeway-UI": "1" },
    body: JSON.stringify({ token: document.getElementById("token").value }),
  });
  if (r.ok) { location.reload(); } else { document.getElementById("error").textContent = "That token is not accepted."; }
};
