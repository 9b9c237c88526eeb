#!/usr/bin/env python3
"""End-to-end tests of the UI's sign-in behind `durable serve --token`.

The real server on a free loopback port, driven over HTTP the way a browser
would: HTML pages without auth are a 303 to /ui/signin.html (with the way
back), the API answers 401 JSON; POST /signin with a wrong or no token is
401, with the right one 204 and a session cookie (HttpOnly, SameSite=Strict,
Path=/, not the token) that authorizes GETs and event streams; a POST the
cookie authorizes needs Sec-Fetch-Site: same-origin or a matching Origin
(a cross-site one is 403, nothing done); sign-out, a forged cookie, an
expired one (--session-ttl) and a restart end it; bearer tokens are not
affected.

Usage: test_auth.py --durable PATH/durable --examples PATH/examples [unittest args]
"""
import time

import server_util as su
from server_util import task

TOKEN = "s3cret-token"


def quick(name):
    return {"name": name, "steps": [task("a", 0.05)]}


def set_cookies(r):
    """{name: (value, attribute string)} of the response's Set-Cookie headers."""
    out = {}
    for h in r.headers.get_all("Set-Cookie") or []:
        first, _, attrs = h.partition(";")
        name, _, value = first.partition("=")
        out[name.strip()] = (value.strip(), attrs)
    return out


class AuthTest(su.ServerTest):

    def sign_in(self, srv, token=TOKEN, headers=None):
        return srv.post("/signin", {"token": token}, auth=False, headers=headers)

    def session(self, srv):
        r = self.sign_in(srv)
        self.assertStatus(r, 204)
        return set_cookies(r)["durable_session"][0]

    def as_cookie(self, srv, method, path, cookie, body=None, headers=None):
        h = {"Cookie": "durable_session=%s" % cookie}
        h.update(headers or {})
        return srv.request(method, path, json_body=body, headers=h, auth=False)

    def test_pages_redirect_api_answers_401(self):
        srv = self.start_server(token=TOKEN)
        r = srv.get("/", auth=False)
        self.assertStatus(r, 303)
        self.assertEqual(r.header("Location"), "/ui/signin.html?next=%2F", r)
        r = srv.get("/ui/run.html?id=run_1", auth=False)
        self.assertStatus(r, 303)
        self.assertEqual(r.header("Location"),
                         "/ui/signin.html?next=%2Fui%2Frun.html%3Fid%3Drun_1", r)
        for path in ("/ui/signin.html", "/ui/signin.js", "/ui/style.css", "/favicon.svg"):
            with self.subTest(path=path):
                self.assertStatus(srv.get(path, auth=False), 200)
        for path in ("/runs", "/workflows", "/events/stream", "/openapi.json"):
            with self.subTest(path=path):
                self.assertError(srv.get(path, auth=False), 401)

    def test_sign_in_cookie_flags_and_use(self):
        srv = self.start_server(token=TOKEN)
        self.assertError(self.sign_in(srv, "wrong"), 401)
        self.assertError(self.sign_in(srv, ""), 401)
        self.assertError(srv.post("/signin", {}, auth=False), 400)
        self.assertError(srv.post("/signin", {"token": TOKEN, "x": 1}, auth=False), 400)
        r = self.sign_in(srv)
        self.assertStatus(r, 204)
        cookies = set_cookies(r)
        value, attrs = cookies["durable_session"]
        self.assertRegex(value, r"^[0-9a-f]{64}$", r)
        self.assertNotIn(TOKEN, r.headers.get("Set-Cookie", ""), "the cookie is not the token")
        flags = [a.strip().lower() for a in attrs.split(";")]
        for flag in ("httponly", "samesite=strict", "path=/"):
            self.assertIn(flag, flags, r)
        self.assertNotIn("secure", flags, "plain HTTP: no Secure" + str(r))
        self.assertIn("max-age=43200", flags, r)
        self.assertEqual(cookies["durable_signed_in"][0], "1", r)
        # behind a TLS proxy the cookie is Secure
        r = self.sign_in(srv, headers={"X-Forwarded-Proto": "https"})
        self.assertIn("secure", [a.strip().lower()
                                 for a in set_cookies(r)["durable_session"][1].split(";")], r)
        # the cookie works for pages, GETs and event streams
        self.assertStatus(self.as_cookie(srv, "GET", "/", value), 200)
        self.assertOk(self.as_cookie(srv, "GET", "/workflows", value))
        self.register(srv, quick("cookie-run"))
        run = self.start_run(srv, "cookie-run")
        self.wait_run(srv, run["id"])
        sse = su.SSE(srv, "/runs/%s/stream" % run["id"], auth=False,
                     headers={"Cookie": "durable_session=%s" % value})
        self.assertEqual(sse.status, 200)
        ev = sse.next(10)
        self.assertEqual(ev["event"], "run_created", ev)
        sse.close()

    def test_cookie_posts_need_same_origin(self):
        srv = self.start_server(token=TOKEN)
        cookie = self.session(srv)
        origin = "http://%s:%d" % (srv.host, srv.port)
        before = srv.get("/orders").total()
        for h in ({}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                  {"Origin": "http://evil.example"}, {"Origin": "null"}):
            with self.subTest(headers=h):
                err = self.assertError(
                    self.as_cookie(srv, "POST", "/orders", cookie, {"amount": 1}, h), 403)
                self.assertEqual(err["code"], "forbidden")
        self.assertEqual(srv.get("/orders").total(), before, "a refused POST created nothing")
        self.assertStatus(self.as_cookie(srv, "POST", "/orders", cookie, {"amount": 1},
                                         {"Sec-Fetch-Site": "same-origin"}), 201)
        self.assertStatus(self.as_cookie(srv, "POST", "/orders", cookie, {"amount": 1},
                                         {"Origin": origin}), 201)
        # a bearer token needs no such proof
        self.assertStatus(srv.post("/orders", {"amount": 1}), 201)
        # and a cross-site sign-in is refused
        self.assertError(self.sign_in(srv, headers={"Sec-Fetch-Site": "cross-site"}), 403)

    def test_sign_out_forged_expired_restart(self):
        srv = self.start_server(token=TOKEN, args=("--session-ttl", "2"))
        cookie = self.session(srv)
        self.assertOk(self.as_cookie(srv, "GET", "/runs", cookie))
        # forged: a random value, the token itself, a truncated id
        for forged in ("0" * 64, TOKEN, cookie[:-1], cookie[:-1] + ("0" if cookie[-1] != "0"
                                                                     else "1")):
            with self.subTest(forged=forged):
                self.assertError(self.as_cookie(srv, "GET", "/runs", forged), 401)
        # sign-out ends it, and clears the cookies
        r = self.as_cookie(srv, "POST", "/signout", cookie, headers={"Sec-Fetch-Site":
                                                                     "same-origin"})
        self.assertStatus(r, 204)
        cleared = set_cookies(r)
        self.assertEqual(cleared["durable_session"][0], "", r)
        self.assertIn("Max-Age=0", cleared["durable_session"][1], r)
        self.assertError(self.as_cookie(srv, "GET", "/runs", cookie), 401)
        # expired after --session-ttl
        cookie = self.session(srv)
        self.assertOk(self.as_cookie(srv, "GET", "/runs", cookie))
        time.sleep(2.3)
        self.assertError(self.as_cookie(srv, "GET", "/runs", cookie), 401)
        # sessions end at a restart
        cookie = self.session(srv)
        srv.stop()
        srv.start()
        self.assertError(self.as_cookie(srv, "GET", "/runs", cookie), 401)
        # bearer still works, and a wrong bearer is not rescued by a cookie
        self.assertOk(srv.get("/runs"))
        cookie = self.session(srv)
        self.assertError(self.as_cookie(srv, "GET", "/runs", cookie,
                                        headers={"Authorization": "Bearer wrong"}), 401)

    def test_without_token_sign_in_is_a_no_op(self):
        srv = self.start_server()
        self.assertStatus(srv.get("/", auth=False), 200)
        r = srv.post("/signin", {"token": "anything"}, auth=False)
        self.assertStatus(r, 204)
        self.assertEqual(set_cookies(r), {}, r)


if __name__ == "__main__":
    su.main()
