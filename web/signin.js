// signin.js - the sign-in page of a server started with a token: POSTs the
// token to /signin, which answers with a session cookie (HttpOnly: this
// page never sees it), then goes where the visitor was headed (?next=, a
// path of this server only) or to the dashboard.

const form = document.getElementById("signin");
const input = document.getElementById("token");
const notice = document.getElementById("notice");
const button = document.getElementById("submit");

// Only a path of this server: "/x", never "//host" or "/\host".
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return /^\/(?![/\\])/.test(next) ? next : "/";
}

function say(msg) {
  notice.className = "notice err";
  notice.textContent = msg;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  button.disabled = true;
  try {
    const res = await fetch("/signin", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token: input.value }),
    });
    if (res.ok) {
      location.replace(nextPath());
      return;
    }
    const body = await res.json().catch(() => null);
    say(res.status === 401 ? "Wrong token: try again."
      : (body && body.error && body.error.message) || `The server answered ${res.status}.`);
    input.select();
  } catch {
    say("The server is unreachable.");
  } finally {
    button.disabled = false;
  }
});
