"""The console's routes: three pages, their live fragments, pictures, downloads, actions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..journal import FileRecord
from ..status.phases import PHASES
from . import posed, poseview, views
from .facade import ROWS_SHOWN, Console
from .operations import ActionRefused
from .security import CSRF_FIELD, Guard, GuardMiddleware, local_path

HERE = Path(__file__).parent
ACTIONS = ("pause", "resume", "retry", "forget", "approve")
# Journal ids are SQLite integers (at most 2**63 - 1) counted from 1: a longer number names
# nothing, so it matches no route (404) instead of reaching SQLite (OverflowError, 500).
JOURNAL_ID = re.compile("[0-9]{1,18}")


class JournalId(Convertor[int]):
    regex = JOURNAL_ID.pattern

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", JournalId())


def journal_id(text: str) -> int | None:
    """The journal id `text` spells (ASCII digits, in range), else None."""
    return int(text) if JOURNAL_ID.fullmatch(text) else None


def vendor_dir() -> Path:
    """Where the 3D viewer's files are (fetched by `python -m teleport_sync.web.viewer_assets`)."""
    return HERE / "static" / "vendor"


def viewer_available(folder: Path | None = None) -> bool:
    folder = folder or vendor_dir()
    return (folder / "gaussian-splats-3d.module.js").is_file() and (
        folder / "three.module.min.js"
    ).is_file()


def _page_of(request: Request) -> str:
    """The page a request belongs to (a fragment's page), where an action returns to."""
    path = request.url.path.removeprefix("/fragments")
    path = "/" if path in ("", "/overview") else path
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("done", "refused")]
    return path + (f"?{urlencode(params)}" if params else "")


class Pages:
    """Request handlers over one `Console`; templates rendered with autoescaping."""

    def __init__(self, console: Console, guard: Guard, vendor: Path) -> None:
        self.console = console
        self.guard = guard
        self.vendor = vendor
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["breakable"] = views.breakable

    def render(self, name: str, request: Request, **context: Any) -> HTMLResponse:
        template = self.env.get_template(name)
        html = template.render(
            csrf=self.guard.csrf,
            csrf_field=CSRF_FIELD,
            version=__version__,
            here=_page_of(request),
            notice=request.query_params.get("done") or request.query_params.get("refused"),
            refused="refused" in request.query_params,
            phases=PHASES,
            **context,
        )
        return HTMLResponse(html)

    # -- pages ---------------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        return self.render("overview.html", request, o=self.console.overview(), page="overview")

    async def overview_fragment(self, request: Request) -> Response:
        return self.render("_overview.html", request, o=self.console.overview())

    def _filters(self, request: Request) -> dict[str, str | None]:
        phase = request.query_params.get("phase") or None
        return {"phase": phase if phase in PHASES else None, "q": request.query_params.get("q")}

    async def files(self, request: Request) -> Response:
        f = self._filters(request)
        rows = self.console.rows(f["phase"], f["q"])
        query = urlencode({k: v for k, v in f.items() if v})
        return self.render(
            "files.html",
            request,
            rows=rows[:ROWS_SHOWN],
            total=len(rows),
            filters=f,
            page="files",
            query=query,
        )

    async def files_fragment(self, request: Request) -> Response:
        f = self._filters(request)
        rows = self.console.rows(f["phase"], f["q"])
        return self.render("_rows.html", request, rows=rows[:ROWS_SHOWN])

    async def capture(self, request: Request) -> Response:
        c = self.console.capture(request.path_params["file_id"])
        if c is None:
            return PlainTextResponse("no such file in the journal (forgotten?)\n", 404)
        viewer = viewer_available(self.vendor)
        return self.render("capture.html", request, c=c, page="files", viewer=viewer)

    async def capture_fragment(self, request: Request) -> Response:
        c = self.console.capture(request.path_params["file_id"])
        if c is None:
            return PlainTextResponse("gone\n", 404)
        return self.render("_capture.html", request, c=c)

    async def files_json(self, request: Request) -> Response:
        f = self._filters(request)
        return JSONResponse(self.console.rows(f["phase"], f["q"]))

    # -- pictures and downloads ----------------------------------------------------------------

    async def thumbnail(self, request: Request) -> Response:
        png = self.console.thumbnail(request.path_params["file_id"])
        if png is None:
            return PlainTextResponse("no model to draw yet\n", 404)
        return Response(png, media_type="image/png")

    async def preflight_frame(self, request: Request) -> Response:
        jpeg = self.console.preflight_frame(
            request.path_params["file_id"], request.path_params["n"]
        )
        if jpeg is None:
            return PlainTextResponse("no such pre-flight frame\n", 404)
        return Response(jpeg, media_type="image/jpeg")

    def _record(self, request: Request) -> FileRecord | None:
        try:
            return self.console.link.journal.get(request.path_params["file_id"])
        except KeyError:
            return None

    async def left_out(self, request: Request) -> Response:
        record = self._record(request)
        found = posed.left_out_picture(record, request.path_params["n"]) if record else None
        if found is None:
            return PlainTextResponse("no such left-out photo\n", 404)
        return Response(found[0], media_type=found[1])

    async def cameras(self, request: Request) -> Response:
        record = self._record(request)
        path = posed.camera_path(record) if record else None
        if path is None:
            return PlainTextResponse("no camera list\n", 404)
        return JSONResponse({"positions": path})

    async def pose(self, request: Request) -> Response:
        """The pose check's sparse points and camera path, for the page's 3D view."""
        record = self._record(request)
        row = self.console.link.journal.preflight_of(record.id) if record else None
        current = row is not None and record is not None
        current = current and row.fingerprint == record.identity.fingerprint  # type: ignore[union-attr]
        found = poseview.pose_cloud(row.report if current and row else None)
        if found is None:
            return PlainTextResponse("no pose check for this file\n", 404)
        return JSONResponse(found)

    async def result(self, request: Request) -> Response:
        path = self.console.result_path(request.path_params["file_id"], request.path_params["n"])
        if path is None:
            return PlainTextResponse("no such result file\n", 404)
        return FileResponse(path, filename=path.name, media_type="application/octet-stream")

    async def preview(self, request: Request) -> Response:
        path = self.console.preview_path(request.path_params["file_id"])
        if path is None:
            return PlainTextResponse("no preview image\n", 404)
        return FileResponse(path)

    # -- actions -------------------------------------------------------------------------------

    async def action(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        presented = form.get(CSRF_FIELD) or request.headers.get("x-csrf-token")
        if not self.guard.csrf_ok(presented):
            return PlainTextResponse(
                "refused: missing or stale CSRF token (reload the page and try again)\n", 403
            )
        action = request.path_params["action"]
        if action not in ACTIONS:
            return PlainTextResponse(f"unknown action {action}\n", 404)
        file_id = journal_id(form.get("file_id") or "")
        back = local_path(form.get("next", "/"))
        try:
            message, key = self.console.act(action, file_id), "done"
        except (ActionRefused, KeyError) as exc:
            message, key = str(exc) if isinstance(exc, ActionRefused) else "no such file", "refused"
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"ok": key == "done", "message": message})
        path, _, query = back.partition("?")
        params = [(k, v) for k, v in parse_qsl(query) if k not in ("done", "refused")]
        params.append((key, message))
        return RedirectResponse(f"{path}?{urlencode(params)}", 303)


def create_app(console: Console, guard: Guard, *, vendor: Path | None = None) -> Starlette:
    vendor = vendor or vendor_dir()
    pages = Pages(console, guard, vendor)
    routes = [
        Route("/", pages.overview),
        Route("/fragments/overview", pages.overview_fragment),
        Route("/files", pages.files),
        Route("/fragments/files", pages.files_fragment),
        Route("/api/files", pages.files_json),
        Route("/files/{file_id:id}", pages.capture),
        Route("/fragments/files/{file_id:id}", pages.capture_fragment),
        Route("/files/{file_id:id}/thumbnail.png", pages.thumbnail),
        Route("/files/{file_id:id}/preview", pages.preview),
        Route("/files/{file_id:id}/preflight/{n:id}.jpg", pages.preflight_frame),
        Route("/files/{file_id:id}/results/{n:id}/{name}", pages.result),
        Route("/files/{file_id:id}/left-out/{n:id}", pages.left_out),
        Route("/files/{file_id:id}/cameras.json", pages.cameras),
        Route("/files/{file_id:id}/pose.json", pages.pose),
        Route("/actions/{action}", pages.action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static", check_dir=True), name="static"),
    ]
    if vendor != vendor_dir() and vendor.is_dir():
        routes.insert(-1, Mount("/static/vendor", StaticFiles(directory=vendor), name="vendor"))
    app = Starlette(routes=routes)
    return GuardMiddleware(app, guard)  # type: ignore[return-value]
