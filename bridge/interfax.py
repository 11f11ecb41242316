"""The async InterFAX REST client: the only module that imports httpx.

One pooled :class:`httpx.AsyncClient` with HTTP Basic auth sent up front,
explicit timeouts and verified TLS. Requests are framed by the pure
:mod:`bridge.interfax_wire`, responses parsed into :mod:`bridge.interfax_models`,
failures raised as the exceptions of :mod:`bridge.interfax_errors` (whose
docstring explains the classification; they live there so that code catching
them need not import httpx). Every httpx exception is translated in
:func:`_transport_error`; none escapes.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar

import certifi
import httpx

from bridge import __version__
from bridge import interfax_wire as wire
from bridge.faxmodels import DocumentRef, FaxDocument, SendOptions
from bridge.interfax_errors import (
    Delivery,
    InterfaxAmbiguousError,
    InterfaxAmbiguousProtocolError,
    InterfaxError,
    InterfaxProtocolError,
    InterfaxRequestError,
    InterfaxTransientError,
    error_for_status,
    error_for_transport,
)
from bridge.interfax_models import (
    Disposition,
    ForwardingEmail,
    InboundFax,
    InboundImage,
    ModelError,
    OutboundFax,
    UploadSession,
    list_parser,
    parse_decimal,
)
from bridge.interfax_wire import MAX_CHUNK_SIZE, QueryValue, WireError

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = f"fax-bridge/{__version__}"
_DEFAULT_OPTIONS = SendOptions()
_T = TypeVar("_T")
_S = TypeVar("_S")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to connect, to wait for each read, to finish each write, to get a pooled slot."""

    connect: float = 10.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 30.0


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str
    location: str | None


class InterfaxClient:
    """Async client of the InterFAX REST API (shared/interfax-api.md). Use as ``async with``.

    ``chunk_size`` (at most 1 MiB) is the documents-API chunk; inline documents
    larger than ``upload_threshold`` are uploaded through the documents API
    before the fax is posted, as the official clients do.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float | Timeouts = Timeouts(),
        ca_bundle: Path | None = None,
        max_connections: int = 10,
        chunk_size: int = MAX_CHUNK_SIZE,
        upload_threshold: int = MAX_CHUNK_SIZE,
        user_agent: str = DEFAULT_USER_AGENT,
        observer: Callable[[str, float, str | None], None] | None = None,
    ) -> None:
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes")
        if upload_threshold < 0 or max_connections < 1:
            raise ValueError("upload_threshold must be >= 0 and max_connections >= 1")
        t = timeout if isinstance(timeout, Timeouts) else Timeouts(*(float(timeout),) * 4)
        context = ssl.create_default_context(cafile=str(ca_bundle or certifi.where()))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._base_url = base_url.rstrip("/")
        self._username = username
        self._chunk_size = chunk_size
        self._upload_threshold = upload_threshold
        self._observer = observer
        # The password lives only inside httpx's auth object: never in our attributes or repr.
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            auth=httpx.BasicAuth(username, password),
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            verify=context,
            headers={"User-Agent": wire.check_header_value(user_agent, "user_agent")},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"InterfaxClient(base_url={self._base_url!r}, username={self._username!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    # -- outbound -------------------------------------------------------------------------

    async def send_fax(
        self,
        fax_number: str,
        documents: Sequence[FaxDocument | DocumentRef],
        options: SendOptions = _DEFAULT_OPTIONS,
    ) -> int:
        """Submit one fax and return its id (the last segment of the absolute ``Location``).

        Inline documents larger than ``upload_threshold`` are uploaded first (single
        use). A failure while uploading them is never ambiguous (no fax was posted
        yet); documents uploaded here are deleted when the fax surely was not created.
        """
        endpoint = "POST /outbound/faxes"
        try:
            wire.validate_documents(documents)
            query = wire.encode_query(wire.send_params(fax_number, options))
        except ValueError as exc:
            raise InterfaxRequestError(f"{endpoint}: {exc}", endpoint=endpoint) from exc
        uploaded: list[DocumentRef] = []
        parts: list[FaxDocument | DocumentRef] = []
        try:
            for doc in documents:
                if isinstance(doc, FaxDocument) and doc.size > self._upload_threshold:
                    doc = await self.upload_document(doc.filename, doc.data)
                    uploaded.append(doc)
                parts.append(doc)
        except InterfaxError as exc:
            await self._discard(uploaded)
            if not isinstance(exc, InterfaxAmbiguousError):
                raise
            raise InterfaxTransientError(  # no fax was posted yet: nothing is in doubt
                f"document upload failed, no fax was submitted: {exc}",
                endpoint=exc.endpoint,
                http_status=exc.http_status,
                retry_after=exc.retry_after,
            ) from exc
        body = wire.send_body(parts)
        try:
            reply = await self._request(
                "POST",
                "/outbound/faxes",
                query,
                body.content,
                body.headers,
                mutating=True,
                expect=(201,),
            )
        except InterfaxAmbiguousError:
            raise  # the fax may exist and may have consumed the documents: keep them
        except InterfaxError:
            await self._discard(uploaded)
            raise
        return self._parse(endpoint, True, reply.location, wire.fax_id_from_location)

    async def get_outbound(self, fax_id: int) -> OutboundFax:
        """The full record of one outbound fax."""
        return await self._get(f"/outbound/faxes/{int(fax_id)}", OutboundFax.from_json)

    async def completed(
        self, fax_ids: Iterable[int], *, batch_size: int = 100
    ) -> list[OutboundFax]:
        """Summary records of those ``fax_ids`` that have finished (status >= 0).

        One ``/outbound/faxes/completed?ids=`` call per ``batch_size`` distinct ids, so
        a poller stays within InterFAX's few-polls-a-minute guidance (§10).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        unique = list(dict.fromkeys(int(i) for i in fax_ids))
        build = list_parser(OutboundFax.from_json, "completed faxes")
        result: list[OutboundFax] = []
        for start in range(0, len(unique), batch_size):
            ids = unique[start : start + batch_size]
            result += await self._get("/outbound/faxes/completed", build, {"ids": ids})
        return result

    async def search(
        self,
        *,
        reference: str | None = None,
        ids: Sequence[int] | None = None,
        fax_number: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_order: Literal["asc", "desc"] | None = None,
    ) -> list[OutboundFax]:
        """Search outbound faxes (§5.9), full records; hidden faxes never appear."""
        params: dict[str, QueryValue] = {
            "ids": ids,
            "reference": reference,
            "faxNumber": fax_number,
            "limit": limit,
            "offset": offset,
            "sortOrder": sort_order,
        }
        return await self._get(
            "/outbound/search", list_parser(OutboundFax.from_json, "search"), params
        )

    async def cancel(self, fax_id: int) -> None:
        """Cancel a fax still waiting to be sent (a permanent 409 once it has completed)."""
        path = f"/outbound/faxes/{int(fax_id)}/cancel"
        await self._request("POST", path, mutating=True, expect=(200, 204))

    async def outbound_image(self, fax_id: int) -> bytes:
        """The transmitted image of an outbound fax (TIFF)."""
        return (await self._request("GET", f"/outbound/faxes/{int(fax_id)}/image")).body

    # -- documents ------------------------------------------------------------------------

    async def upload_document(
        self, name: str, data: bytes, disposition: Disposition = Disposition.SINGLE_USE
    ) -> DocumentRef:
        """Upload ``data`` through the documents API in ordered chunks; return its reference.

        ``name`` must end in a supported extension: InterFAX types the document by it.
        Chunks are streamed as memoryview slices of ``data``, so the client never holds
        a copy of the document. When a chunk fails the document is deleted (best
        effort) and the error raised; a chunk's lost answer is ambiguous like any
        state change.
        """
        endpoint = "POST /outbound/documents"
        if not data:
            raise InterfaxRequestError(f"{endpoint}: empty document", endpoint=endpoint)
        query = wire.encode_query({"size": len(data), "name": name, "disposition": disposition})
        reply = await self._request(
            "POST", "/outbound/documents", query, mutating=True, expect=(201,)
        )
        doc_id = self._parse(endpoint, True, reply.location, wire.location_id)
        ref = DocumentRef(str(reply.location))
        ranges = list(wire.chunk_ranges(len(data), self._chunk_size))
        view = memoryview(data)
        try:
            for index, (start, end) in enumerate(ranges):
                await self._request(
                    "POST",
                    f"/outbound/documents/{doc_id}",
                    content=_once(view[start:end]),
                    headers={
                        "Range": wire.range_header(start, end),
                        "Content-Length": str(end - start),
                        "Content-Type": "application/octet-stream",
                    },
                    mutating=True,
                    # 202 means "more please", 200 "complete"; .NET also treats 204 as more.
                    expect=(200,) if index == len(ranges) - 1 else (202, 204),
                )
        except InterfaxError:
            await self._discard([ref])
            raise
        return ref

    async def get_document(self, ref: DocumentRef) -> UploadSession:
        """The state of an uploaded document (404 -1062 once deleted or consumed)."""
        return await self._get(f"/outbound/documents/{self._doc_id(ref)}", UploadSession.from_json)

    async def delete_document(self, ref: DocumentRef) -> None:
        """Delete an uploaded document, or cancel its upload."""
        path = f"/outbound/documents/{self._doc_id(ref)}"
        await self._request("DELETE", path, expect=(200, 204))

    # -- inbound --------------------------------------------------------------------------

    async def list_inbound(
        self,
        *,
        unread_only: bool = False,
        limit: int | None = None,
        last_id: int | None = None,
        all_users: bool = False,
    ) -> list[InboundFax]:
        """One page of received faxes, newest first; ``last_id`` is an exclusive cursor."""
        params: dict[str, QueryValue] = {
            "unreadOnly": True if unread_only else None,
            "limit": limit,
            "lastId": last_id,
            "allUsers": True if all_users else None,
        }
        return await self._get(
            "/inbound/faxes", list_parser(InboundFax.from_json, "inbound"), params
        )

    async def iter_inbound_pages(
        self, *, unread_only: bool = False, page_size: int = 25, all_users: bool = False
    ) -> AsyncIterator[list[InboundFax]]:
        """Every received fax, newest first, a page at a time: paging with ``lastId``
        until a short page (the last one may be empty)."""
        last_id: int | None = None
        while True:
            page = await self.list_inbound(
                unread_only=unread_only, limit=page_size, last_id=last_id, all_users=all_users
            )
            yield page
            ids = [fax.message_id for fax in page]
            last_id = self._parse(
                "GET /inbound/faxes", False, ids, partial(wire.next_cursor, page_size, last_id)
            )
            if last_id is None:
                return

    async def get_inbound(self, message_id: int) -> InboundFax:
        """The record of one received fax."""
        return await self._get(f"/inbound/faxes/{int(message_id)}", InboundFax.from_json)

    async def inbound_image(self, message_id: int) -> InboundImage:
        """The image of a received fax, PDF or TIFF as its Content-Type says."""
        reply = await self._request("GET", f"/inbound/faxes/{int(message_id)}/image")
        return InboundImage(reply.body, reply.content_type or "application/octet-stream")

    async def inbound_emails(self, message_id: int) -> list[ForwardingEmail]:
        """The addresses a received fax was forwarded to, with their delivery status."""
        build = list_parser(ForwardingEmail.from_json, "forwarding emails")
        return await self._get(f"/inbound/faxes/{int(message_id)}/emails", build)

    async def mark_read(self, message_id: int, read: bool = True) -> None:
        """Mark a received fax read (or unread). Repeating it is harmless."""
        path = f"/inbound/faxes/{int(message_id)}/mark"
        await self._request(
            "POST", path, wire.encode_query({"unread": not read}), expect=(200, 204)
        )

    # -- account --------------------------------------------------------------------------

    async def balance(self) -> Decimal:
        """The prepaid balance in the account's currency."""
        return await self._get("/accounts/self/ppcards/balance", parse_decimal)

    # -- plumbing -------------------------------------------------------------------------

    @staticmethod
    def _doc_id(ref: DocumentRef) -> str:
        try:
            return wire.location_id(ref.uri)
        except WireError as exc:
            raise InterfaxRequestError(str(exc), endpoint="/outbound/documents/{id}") from exc

    async def _discard(self, refs: Sequence[DocumentRef]) -> None:
        for ref in refs:
            try:
                await self.delete_document(ref)
            except InterfaxError as exc:
                log.warning("could not delete abandoned document %s: %s", ref.uri, exc)

    @staticmethod
    def _parse(endpoint: str, mutating: bool, raw: _S, build: Callable[[_S], _T]) -> _T:
        try:
            return build(raw)
        except (WireError, ModelError) as exc:
            cls = InterfaxAmbiguousProtocolError if mutating else InterfaxProtocolError
            raise cls(f"{endpoint}: unusable success answer: {exc}", endpoint=endpoint) from exc

    async def _get(
        self,
        path: str,
        build: Callable[[object], _T],
        params: Mapping[str, QueryValue] | None = None,
    ) -> _T:
        reply = await self._request("GET", path, wire.encode_query(params or {}), accept_json=True)
        return self._parse(
            f"GET {path}", False, reply.body, lambda body: build(wire.parse_json(body))
        )

    def _observe(self, method: str, path: str, started: float, error: str | None) -> None:
        if self._observer is not None:
            # Ids become "{id}" so each endpoint is one metric series, not one per fax.
            endpoint = f"{method} {_ID_SEGMENT.sub('/{id}', path)}"
            self._observer(endpoint, time.monotonic() - started, error)

    async def _request(
        self,
        method: str,
        path: str,
        query: str = "",
        content: bytes | AsyncIterator[bytes] = b"",
        headers: Mapping[str, str] | None = None,
        *,
        mutating: bool = False,
        expect: Sequence[int] = (200,),
        accept_json: bool = False,
    ) -> _Reply:
        endpoint = f"{method} {path}"
        extra = {**(headers or {}), **({"Accept": "application/json"} if accept_json else {})}
        started = time.monotonic()
        try:
            response = await self._http.request(
                method, f"{path}?{query}" if query else path, content=content, headers=extra
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            self._observe(method, path, started, type(exc).__name__)
            raise _transport_error(exc, endpoint, mutating) from exc
        log.debug("InterFAX %s -> %d", endpoint, response.status_code)
        ok = response.status_code in expect
        self._observe(method, path, started, None if ok else f"http_{response.status_code}")
        if ok:
            return _Reply(
                response.status_code,
                response.content,
                response.headers.get("Content-Type", ""),
                response.headers.get("Location"),
            )
        raise error_for_status(
            response.status_code,
            response.content,
            endpoint=endpoint,
            mutating=mutating,
            retry_after=response.headers.get("Retry-After"),
            now=datetime.now(UTC),
        )


_ID_SEGMENT = re.compile(r"/(?:[0-9]+|[0-9a-f]{32})(?=/|$)")


async def _once(chunk: memoryview) -> AsyncIterator[bytes]:
    """Stream one chunk without copying it.

    httpx keeps a request's body alive in a reference cycle (response <-> stream)
    until the garbage collector runs; a ``bytes`` copy per chunk would pile up to
    many MiB during a large upload. A stream holds the slice only until it is sent.
    """
    yield chunk  # type: ignore[misc]  # a memoryview is bytes-like; h11 joins it into the frame


def _transport_error(exc: Exception, endpoint: str, mutating: bool) -> InterfaxError:
    """Translate an httpx exception by how far the request can have got."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError) and cause is not None:
        delivery, exc = Delivery.TLS_REFUSED, cause
    elif isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        delivery = Delivery.NOT_SENT
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
        delivery = Delivery.UNSENDABLE
    else:
        delivery = Delivery.ANSWER_LOST
    detail = f"{type(exc).__name__}: {exc or 'no detail'}"
    return error_for_transport(delivery, detail, endpoint=endpoint, mutating=mutating)
