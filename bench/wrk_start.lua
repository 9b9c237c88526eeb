-- wrk script of workload W6: every request starts a run
-- (POST /workflows/{id}/runs, the workflow named in the URL) over keep-alive.
wrk.method = "POST"
wrk.body = '{"input": {}}'
wrk.headers["Content-Type"] = "application/json"
