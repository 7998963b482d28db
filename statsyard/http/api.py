"""HttpApi: the WSGI application behind StatsYard's HTTP API.

Endpoints (graphite-web 1.1 is the reference for the Graphite ones; see
``docs/http.md``):

- ``/metrics/find``, ``/metrics/expand``, ``/metrics/index.json``
- ``/render``, ``/functions``, ``/functions/<name>``
- ``/tags``, ``/tags/<tag>``, ``/tags/findSeries``,
  ``/tags/autoComplete/tags``, ``/tags/autoComplete/values``
- ``/metrics`` (Prometheus text format), ``/-/healthy``, ``/-/ready``
- ``/`` and ``/static/...``: the small web page.

Each request runs in one of the HTTP server's worker threads and reads the
live storage directly (the handle ``StatsYard.query()`` uses). A user's
mistake is answered with graphite-web's status code and a one-line message
(JSON ``{"error": ...}`` for the tag API, as graphite-web does); an
unexpected failure is logged with its traceback and answered 500 with one
line, never the traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

from statsyard.exceptions import BadArgumentError, NotRunningError
from statsyard.http.catalog import Catalog, filter_anchored, limited_sorted
from statsyard.http.prometheus import CONTENT_TYPE as PROMETHEUS_TYPE
from statsyard.http.prometheus import exposition
from statsyard.render.describe import function_info, function_list, to_json
from statsyard.render.source import parse_tag_expression

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from statsyard.metrics import Registry
    from statsyard.storage import Storage

__all__ = ["HttpApi", "HttpError", "Request", "Response"]

logger = logging.getLogger(__name__)

JSON: Final = "application/json"
TEXT: Final = "text/plain; charset=utf-8"
MAX_BODY: Final = 1024 * 1024
"""Largest accepted request body (a POSTed form), in bytes."""
AUTOCOMPLETE_LIMIT: Final = 100
"""graphite-web's TAGDB_AUTOCOMPLETE_LIMIT."""
STORAGE_WAIT: Final = 5.0

_STATIC_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": TEXT,
}


class HttpError(Exception):
    """A request the API refuses: status and a one-line message.

    Attributes:
        status: the HTTP status code.
        as_json: answer ``{"error": message}`` (the tag API) instead of text.
    """

    def __init__(self, status: int, message: str, *, as_json: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.as_json = as_json


class Request:
    """One request: method, path and its parameters (query string, then form).

    Like Django's ``QueryDict`` in graphite-web, :meth:`get` returns the
    last value of a repeated parameter and :meth:`getlist` all of them.
    """

    def __init__(self, method: str, path: str, params: list[tuple[str, str]]) -> None:
        self.method = method
        self.path = path
        self.params = params

    def get(self, name: str, default: str | None = None) -> str | None:
        """The last value of ``name``, or ``default``."""
        found = default
        for key, value in self.params:
            if key == name:
                found = value
        return found

    def getlist(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        return [value for key, value in self.params if key == name]

    def __contains__(self, name: str) -> bool:
        return any(key == name for key, _ in self.params)

    def get_int(self, name: str, default: int) -> int:
        """An integer parameter, or a 400 naming it (graphite-web's message).

        Raises:
            HttpError: the value is not an integer.
        """
        text = self.get(name)
        if text is None:
            return default
        try:
            return int(text)
        except ValueError:
            raise HttpError(
                400,
                f"Invalid parameters (Invalid int value {text!r} for param {name})",
            ) from None

    @classmethod
    def from_environ(cls, environ: WSGIEnvironment) -> Request:
        """Parse the query string and a url-encoded form body.

        Raises:
            HttpError: the body is too large or not valid.
        """
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "/")) or "/"
        params = parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        content_type = str(environ.get("CONTENT_TYPE", ""))
        if method == "POST" and content_type.startswith(
            "application/x-www-form-urlencoded"
        ):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise HttpError(400, "bad Content-Length") from None
            if length > MAX_BODY:
                raise HttpError(413, f"request body larger than {MAX_BODY} bytes")
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise HttpError(400, "request body is not valid UTF-8") from None
            params += parse_qsl(text, keep_blank_values=True)
        return cls(method, path, params)


class Response:
    """A finished answer: status, content type, body and extra headers."""

    def __init__(
        self,
        body: bytes,
        content_type: str = JSON,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.status = status
        self.headers = list(headers)

    @classmethod
    def json(cls, data: Any, request: Request, status: int = 200) -> Response:
        """``data`` as JSON; ``pretty=1`` indents it, as graphite-web does."""
        pretty = bool(request.get("pretty"))
        text = json.dumps(data, indent=2 if pretty else None, sort_keys=pretty)
        return cls(text.encode("utf-8"), JSON, status)

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        """Plain text."""
        return cls(text.encode("utf-8"), TEXT, status)


def _no_cache(response: Response) -> Response:
    response.headers += [("Pragma", "no-cache"), ("Cache-Control", "no-cache")]
    return response


Handler = Callable[[Request], Response]


class HttpApi:
    """The WSGI application: routes each request to its handler.

    Args:
        storage: returns the live storage, waiting up to the given seconds
            (``StorageHandle.get``).
        registry: StatsYard's metrics registry, for ``/metrics``.
        ready: whether the tree is up and the storage open, for ``/-/ready``.
        default_entity: the entity whose series are plain Graphite paths.
        render: the ``/render`` handler (a ``Request -> Response``).
        namespace: prefix of the Prometheus metric names.
    """

    def __init__(
        self,
        *,
        storage: Callable[[float], Storage],
        registry: Registry,
        ready: Callable[[], bool],
        default_entity: str,
        render: Handler,
        namespace: str = "statsyard",
    ) -> None:
        self._storage = storage
        self._registry = registry
        self._ready = ready
        self._default_entity = default_entity
        self._namespace = namespace
        self._routes: dict[str, Handler] = {
            "/": self._index_page,
            "/metrics/find": self._find,
            "/metrics/expand": self._expand,
            "/metrics/index.json": self._index_json,
            "/render": render,
            "/functions": self._function_list,
            "/tags": self._tag_list,
            "/tags/findSeries": self._find_series,
            "/tags/autoComplete/tags": self._autocomplete_tags,
            "/tags/autoComplete/values": self._autocomplete_values,
            "/metrics": self._prometheus,
            "/-/healthy": self._healthy,
            "/-/ready": self._ready_check,
        }

    # -- WSGI -----------------------------------------------------------------

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> list[bytes]:
        """Answer one request (in a server worker thread)."""
        try:
            request = Request.from_environ(environ)
            response = self.handle(request)
        except HttpError as error:
            response = self._error_response(error)
        except Exception:  # deliberate: a bug answers 500, never a traceback
            logger.exception(
                "HTTP %s %s failed",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
            )
            response = Response.text("internal error (see the server's log)\n", 500)
        status = HTTPStatus(response.status)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        start_response(f"{status.value} {status.phrase}", headers)
        return [response.body]

    def handle(self, request: Request) -> Response:
        """The response to a parsed request.

        Raises:
            HttpError: a refused request.
        """
        path = request.path
        if len(path) > 1:
            path = path.rstrip("/")
        handler = self._routes.get(path)
        if handler is None:
            if path.startswith("/tags/"):
                return self._tag_details(request, path[len("/tags/") :])
            if path.startswith("/functions/"):
                return self._function_details(request, path[len("/functions/") :])
            if path.startswith("/static/"):
                return self._static(path[len("/static/") :])
            raise HttpError(404, f"not found: {request.path}")
        return handler(request)

    @staticmethod
    def _error_response(error: HttpError) -> Response:
        message = str(error).replace("\n", " ")
        if error.as_json:
            body = json.dumps({"error": message}).encode("utf-8")
            return Response(body, JSON, error.status)
        return Response.text(message + "\n", error.status)

    def _methods(self, request: Request, *allowed: str, as_json: bool = False) -> None:
        if request.method not in allowed:
            raise HttpError(
                405,
                f"method {request.method} not allowed; use {' or '.join(allowed)}",
                as_json=as_json,
            )

    # -- the series ------------------------------------------------------------

    def _catalog(self) -> Catalog:
        try:
            storage = self._storage(STORAGE_WAIT)
        except NotRunningError as error:
            raise HttpError(503, f"storage is not open: {error}") from None
        return Catalog(storage.series("*"), self._default_entity)

    # -- /metrics/* ------------------------------------------------------------

    def _find(self, request: Request) -> Response:
        self._methods(request, "GET", "POST")
        form = request.get("format", "treejson")
        leaves_only = request.get_int("leavesOnly", 0)
        wildcards = request.get_int("wildcards", 0)
        position = request.get_int("position", -1)
        query = request.get("query")
        if query is None:
            raise HttpError(
                400, "Invalid parameters (Missing required parameter 'query')"
            )
        if query == "":
            raise HttpError(
                400, "Invalid parameters (Required parameter 'query' is empty)"
            )
        base_path = query.rsplit(".", 1)[0] + "." if "." in query else ""
        if form == "completer":
            query = query.replace("..", "*.")
            if not query.endswith("*"):
                query += "*"
        if form not in ("treejson", "completer", "json", "nodelist"):
            raise HttpError(400, "Invalid value for 'format' parameter")
        try:
            nodes = self._catalog().find(query)
        except BadArgumentError as error:
            raise HttpError(400, f"Invalid parameters ({error})") from None
        if leaves_only:
            nodes = [node for node in nodes if node.is_leaf]
        nodes.sort(key=lambda node: node.name)
        content: Any
        if form == "treejson":
            content = _tree_json(nodes, base_path, wildcards=bool(wildcards))
        elif form == "completer":
            results: list[dict[str, str]] = []
            for node in nodes:
                path = node.path if node.is_leaf else node.path + "."
                results.append(
                    {"path": path, "name": node.name, "is_leaf": str(int(node.is_leaf))}
                )
            if len(results) > 1 and wildcards:
                results.append({"name": "*"})
            content = {"metrics": results}
        elif form == "nodelist":
            found = set()
            for node in nodes:
                parts = node.path.split(".")
                try:
                    found.add(parts[position])
                except IndexError:
                    raise HttpError(
                        400, f"Invalid parameters (position {position} out of range)"
                    ) from None
            content = {"nodes": sorted(found)}
        else:
            content = sorted(
                (
                    {"path": node.path, "is_leaf": node.is_leaf}
                    | ({"intervals": []} if node.is_leaf else {})
                    for node in nodes
                ),
                key=lambda item: str(item["path"]),
            )
        return _no_cache(Response.json(content, request))

    def _expand(self, request: Request) -> Response:
        self._methods(request, "GET", "POST")
        group_by_expr = request.get_int("groupByExpr", 0)
        leaves_only = request.get_int("leavesOnly", 0)
        catalog = self._catalog()
        results: dict[str, set[str]] = {}
        for query in request.getlist("query"):
            try:
                nodes = catalog.find(query)
            except BadArgumentError as error:
                raise HttpError(400, f"Invalid parameters ({error})") from None
            results[query] = {
                node.path for node in nodes if node.is_leaf or not leaves_only
            }
        content: Any
        if group_by_expr:
            content = {query: sorted(paths) for query, paths in results.items()}
        else:
            content = sorted({path for paths in results.values() for path in paths})
        return _no_cache(Response.json({"results": content}, request))

    def _index_json(self, request: Request) -> Response:
        self._methods(request, "GET", "POST")
        return Response.json(self._catalog().names, request)

    # -- /tags -------------------------------------------------------------------

    @staticmethod
    def _limit(request: Request, default: int | None) -> int | None:
        text = request.get("limit")
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise HttpError(
                400, f"invalid limit {text!r}: expected an integer", as_json=True
            ) from None
        return value if value > 0 else default

    def _tag_list(self, request: Request) -> Response:
        self._methods(request, "GET", as_json=True)
        catalog = self._catalog()
        try:
            tags = filter_anchored(catalog.tag_names(), request.get("filter"))
        except ValueError as error:
            raise HttpError(400, str(error), as_json=True) from None
        limit = self._limit(request, None)
        if limit is not None:
            tags = tags[:limit]
        return Response.json([{"tag": tag} for tag in tags], request)

    def _tag_details(self, request: Request, tag: str) -> Response:
        self._methods(request, "GET", as_json=True)
        catalog = self._catalog()
        values = catalog.tag_values(tag)
        if not values:
            return Response.json(None, request)
        try:
            kept = set(filter_anchored([v for v, _ in values], request.get("filter")))
        except ValueError as error:
            raise HttpError(400, str(error), as_json=True) from None
        rows = [{"value": v, "count": n} for v, n in values if v in kept]
        limit = self._limit(request, None)
        if limit is not None:
            rows = rows[:limit]
        return Response.json({"tag": tag, "values": rows}, request)

    def _exprs(self, request: Request) -> list[str]:
        return request.getlist("expr") or request.getlist("expr[]")

    @staticmethod
    def _match(catalog: Catalog, exprs: list[str]) -> list[tuple[str, dict[str, str]]]:
        """``(name, tags)`` of the series matching seriesByTag expressions."""
        try:
            return catalog.match(exprs)
        except BadArgumentError as error:
            raise HttpError(400, str(error), as_json=True) from None

    def _find_series(self, request: Request) -> Response:
        self._methods(request, "GET", "POST", as_json=True)
        exprs = self._exprs(request)
        if not exprs:
            raise HttpError(400, "no tag expressions specified", as_json=True)
        found = self._match(self._catalog(), exprs)
        return Response.json([name for name, _ in found], request)

    def _autocomplete_tags(self, request: Request) -> Response:
        self._methods(request, "GET", "POST", as_json=True)
        limit = self._limit(request, AUTOCOMPLETE_LIMIT) or AUTOCOMPLETE_LIMIT
        prefix = request.get("tagPrefix") or ""
        catalog = self._catalog()
        exprs = self._exprs(request)
        if not exprs:
            names = [t for t in catalog.tag_names() if t.startswith(prefix)]
            return Response.json(names[:limit], request)
        found = self._match(catalog, exprs)
        searched = {parse_tag_expression(expr).tag for expr in exprs}
        tags = (
            tag
            for _, series_tags in found
            for tag in series_tags
            if tag not in searched and tag.startswith(prefix)
        )
        return Response.json(limited_sorted(tags, limit), request)

    def _autocomplete_values(self, request: Request) -> Response:
        self._methods(request, "GET", "POST", as_json=True)
        tag = request.get("tag")
        if not tag:
            raise HttpError(400, "no tag specified", as_json=True)
        limit = self._limit(request, AUTOCOMPLETE_LIMIT) or AUTOCOMPLETE_LIMIT
        prefix = request.get("valuePrefix") or ""
        catalog = self._catalog()
        exprs = self._exprs(request)
        if not exprs:
            values = [v for v, _ in catalog.tag_values(tag) if v.startswith(prefix)]
            return Response.json(values[:limit], request)
        matched = self._match(catalog, [*exprs, f"{tag}!="])
        values_found = (
            tags[tag]
            for _, tags in matched
            if tag in tags and tags[tag].startswith(prefix)
        )
        return Response.json(limited_sorted(values_found, limit), request)

    # -- /functions (Grafana's query editor) ---------------------------------------

    def _function_list(self, request: Request) -> Response:
        self._methods(request, "GET", as_json=True)
        grouped = (request.get("grouped") or "").lower() in ("1", "true")
        result = function_list(group=request.get("group"), grouped=grouped)
        return Response(to_json(result).encode("utf-8"), JSON)

    def _function_details(self, request: Request, name: str) -> Response:
        self._methods(request, "GET", as_json=True)
        try:
            info = function_info(name)
        except KeyError:
            raise HttpError(404, f"Function not found: {name}", as_json=True) from None
        return Response(to_json(info).encode("utf-8"), JSON)

    # -- operations ---------------------------------------------------------------

    def _prometheus(self, request: Request) -> Response:
        self._methods(request, "GET")
        return Response(exposition(self._registry, self._namespace), PROMETHEUS_TYPE)

    def _healthy(self, request: Request) -> Response:
        self._methods(request, "GET", "HEAD")
        return Response.text("StatsYard is Healthy.\n")

    def _ready_check(self, request: Request) -> Response:
        self._methods(request, "GET", "HEAD")
        if not self._ready():
            return Response.text("StatsYard is not ready.\n", 503)
        return Response.text("StatsYard is Ready.\n")

    # -- the page -------------------------------------------------------------------

    def _index_page(self, request: Request) -> Response:
        self._methods(request, "GET", "HEAD")
        return self._static("index.html")

    @staticmethod
    def _static(name: str) -> Response:
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        content_type = _STATIC_TYPES.get(suffix)
        if content_type is None or "/" in name or name.startswith("."):
            raise HttpError(404, f"not found: /static/{name}")
        resource = resources.files("statsyard.http").joinpath("static", name)
        try:
            body = resource.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise HttpError(404, f"not found: /static/{name}") from None
        return Response(body, content_type)


def _tree_json(nodes: list[Any], base_path: str, *, wildcards: bool) -> list[Any]:
    """graphite-web's ``tree_json``: branches first, then leaves, names unique."""
    branch = {"allowChildren": 1, "expandable": 1, "leaf": 0}
    leaf = {"allowChildren": 0, "expandable": 0, "leaf": 1}
    results: list[dict[str, Any]] = []
    if len(nodes) > 1 and wildcards:
        wildcard: dict[str, Any] = {"text": "*", "id": base_path + "*"}
        wildcard.update(branch if any(not n.is_leaf for n in nodes) else leaf)
        results.append(wildcard)
    found: set[str] = set()
    branches: list[dict[str, Any]] = []
    leaves: list[dict[str, Any]] = []
    for node in nodes:
        if node.name in found:
            continue
        found.add(node.name)
        entry: dict[str, Any] = {"text": node.name, "id": base_path + node.name}
        if node.is_leaf:
            entry.update(leaf)
            leaves.append(entry)
        else:
            entry.update(branch)
            branches.append(entry)
    return results + branches + leaves
