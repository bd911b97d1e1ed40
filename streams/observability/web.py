"""The worker's web endpoints, on Faust's web server (``pipeline.web_port``):

* ``/metrics``: Prometheus metrics (``metrics.py``);
* ``/healthz``: 200 while the process runs its event loop (the answer itself shows that);
* ``/readyz``: 200 once the worker has partitions assigned and its sink is connected, else 503;
* ``/dashboard``: the live dashboard page, fed by ``/dashboard/data``;
* ``/explain?event_id=ID[&domain=D]`` (token): why the model scored a stored event as it did
  (the version that scored it; computed on the explainer thread, and stored);
* ``/sql`` (POST, the query as the body; token): one read-only query on the worker's
  ClickHouse as JSON. ``signalyard sql`` uses it for an embedded store, which only this
  process may open.
* ``/backtest/forget?run_id=R`` and ``/backtest/rows?table=T`` (POST, JSONEachRow rows as the
  body; token): a replay's writes to an embedded store this worker holds
  (``store.backtest_runs``), made on a thread of their own, one at a time.

"token": the request must carry the worker's token (``store.web_token``), whatever its address.
"""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import domains
from store.readonly import QueryError
from store.web_token import HEADER, authorized
from streams.observability.dashboard import charts, page, panel_data
from streams.observability.metrics import WorkerCollector, WorkerView, assigned, is_ready

UNAUTHORIZED = (
    "this endpoint needs the worker's token (pipeline.web_token, or the token file the worker "
    "wrote under its home): send Authorization: Bearer <token>"
)


def add_web_views(app: faust.App, worker: WorkerView, token: str) -> None:
    """Register the endpoints above; they are served when the app's web server is on.
    ``token``: what the privileged endpoints require (empty: they refuse every request)."""
    registry = worker.metrics.registry
    registry.register(WorkerCollector(worker))
    store = worker.store

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        # aiohttp refuses a charset in content_type; Prometheus wants it in the header.
        return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        return self.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        ready = is_ready(worker)
        state = {
            "ready": ready,
            "partitions": len(assigned(worker)),
            "sink_connected": worker.sink.connected,
        }
        return self.json(state, status=200 if ready else 503)

    @app.page("/dashboard")
    async def dashboard(self: View, request: Request) -> Response:
        return self.html(page())

    @app.page("/dashboard/data")
    async def dashboard_data(self: View, request: Request) -> Response:
        try:
            panels = await panel_data(store)
        except QueryError as error:
            return self.json({"error": str(error)}, status=500)
        live = {
            domain: {
                "model_name": holder.current.model_name,
                "version": holder.current.version,
                "validation_accuracy": holder.current.calibration.accuracy,
                "estimated_accuracy": worker.metrics.confidence.mean(
                    domain, holder.current.version
                ),
            }
            for domain, holder in worker.scorers.items()
        }
        return self.json({"panels": panels, "charts": charts(), "live_models": live})

    @app.page("/explain")
    async def explain(self: View, request: Request) -> Response:
        # Privileged, as /sql: an explanation shows the event's text, and each one costs model
        # passes on the thread that alerts' explanations wait on.
        if not authorized(request.headers.get(HEADER), token):
            return self.json({"error": UNAUTHORIZED}, status=401)
        event_id = request.query.get("event_id", "").strip()
        domain = request.query.get("domain") or None
        if not event_id or (domain is not None and domain not in domains.names()):
            return self.json(
                {"error": f"give event_id, and optionally domain ({', '.join(domains.names())})"},
                status=400,
            )
        try:
            found = await worker.explainer.explain_event(event_id, domain)  # type: ignore[arg-type]
        except QueryError as error:
            return self.json({"error": str(error)}, status=500)
        return self.json(found, status=404 if "error" in found else 200)

    class Sql(View):
        async def post(self, request: Request) -> Response:
            if not authorized(request.headers.get(HEADER), token):
                return self.json({"error": UNAUTHORIZED}, status=401)
            sql = (await self.read_request_content(request)).decode("utf-8", "replace")
            try:
                result = await store.query(sql)
            except QueryError as error:
                return self.json({"error": str(error)}, status=400)
            return self.json(result.to_json())

    app.page("/sql")(Sql)

    class BacktestWrite(View):
        async def post(self, request: Request, action: str) -> Response:
            if not authorized(request.headers.get(HEADER), token):
                return self.json({"error": UNAUTHORIZED}, status=401)
            body = await self.read_request_content(request)
            try:
                if action == "forget" and request.query.get("run_id"):
                    await worker.backtests.forget(request.query["run_id"])
                elif action == "rows" and request.query.get("table"):
                    await worker.backtests.insert(request.query["table"], body)
                else:
                    return self.json({"error": "POST forget?run_id=R or rows?table=T"}, status=400)
            except Exception as error:  # the replay gets ClickHouse's own reason, in one line
                return self.json({"error": str(error).strip().splitlines()[0]}, status=400)
            return self.json({"ok": True})

    app.page("/backtest/{action}")(BacktestWrite)
