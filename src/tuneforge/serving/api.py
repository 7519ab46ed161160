"""An OpenAI-compatible HTTP server: ``POST /v1/chat/completions``, ``GET /v1/models``, ``/health``.

A thin shell over `ChatModel`, the same generation path as ``tuneforge chat``. Generation runs
on the worker thread of a `GenerationQueue`, never on the event loop, so the server keeps
answering (health checks, 429s, validation errors) while the model works. Every error leaves
as OpenAI's error object, which the official clients turn into their exceptions.

The key is checked before the body is read, and the body is read up to a size limit, so a
stranger can make the server neither parse nor buffer anything. A client that hangs up, streaming
or not, cancels its rows: the batch stops generating for it and a waiting job is skipped.
"""

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tuneforge.config.schema import GenerationArgs
from tuneforge.errors import UserError
from tuneforge.infer.chat import ChatModel, generation_settings, load_chat_model
from tuneforge.infer.decoding import Row
from tuneforge.infer.replies import Answer, ReplyReader
from tuneforge.infer.resolve import ResolvedModel
from tuneforge.serving import protocol
from tuneforge.serving.scheduler import GenerationQueue, QueueFull

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    """What the server accepts: the key, the queue's size and the limits of one request.

    No key means no authentication; `serve` allows that only on a loopback address unless
    `no_auth` says it is meant. An empty key is refused: it reads like a key but lets anyone in.
    """

    model_name: str
    api_key: str | None = None
    no_auth: bool = False
    max_batch: int = 8
    max_waiting: int = 32
    max_prompt_tokens: int = 4096
    max_tokens: int = 2048
    max_request_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise UserError(
                "the API key is empty (--api-key or $TUNEFORGE_API_KEY); give a "
                "non-empty key, or pass --no-auth to serve without one"
            )
        if self.no_auth and self.api_key is not None:
            raise UserError(
                "--no-auth and an API key (--api-key or $TUNEFORGE_API_KEY) "
                "contradict each other; give one of them"
            )


class ApiError(Exception):
    """An answer other than 200, in OpenAI's error format."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers
        self.body = protocol.error_body(message, kind=kind, code=code, param=param)


def create_app(chat: ChatModel, gen: GenerationArgs, settings: ServerSettings) -> "FastAPI":
    """The FastAPI app; `gen` holds the defaults for what a request leaves out.

    (No ``from __future__ import annotations`` in this module: FastAPI reads the handlers'
    annotations, and the types imported inside this function must resolve.)"""
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    jobs = GenerationQueue(chat, max_batch=settings.max_batch, max_waiting=settings.max_waiting)
    context = getattr(chat.model.config, "max_position_embeddings", None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs.start()
        yield
        await run_in_threadpool(jobs.close)

    app = FastAPI(
        title="tuneforge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(protocol.error_body(str(exc.detail)), status_code=exc.status_code)

    def authorised(request: Request) -> None:
        """A dependency: FastAPI runs it before the handler, which reads the body itself."""
        if settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.api_key.encode()
        ):
            raise ApiError(
                401,
                "invalid or missing API key; send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": settings.model_name,
            "running": jobs.running,
            "waiting": jobs.waiting,
        }

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": settings.model_name,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "tuneforge",
                }
            ],
        }

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)], response_model=None)
    async def chat_completions(request: Request) -> dict[str, Any] | StreamingResponse:
        body = _parse(await _read_body(request, settings.max_request_bytes))
        if body.n > settings.max_batch:
            raise ApiError(
                400,
                f"n={body.n}: this server generates at most {settings.max_batch} choices at once",
                param="n",
            )
        wanted = body.requested_tokens or min(gen.max_new_tokens, settings.max_tokens)
        if wanted > settings.max_tokens:
            raise ApiError(
                400,
                f"max_tokens={wanted}: this server allows at most {settings.max_tokens}",
                param="max_tokens",
            )
        try:
            body.check_tools()
            messages = body.conversation()
        except protocol.RequestError as exc:
            raise ApiError(400, str(exc), param=exc.param) from None
        tools = body.active_tools
        prefill = chat.tool_prefill(body.forced_call) if tools else ""
        try:
            prompt = await run_in_threadpool(chat.encode, messages, tools or None, prefill)
        except UserError as exc:
            raise ApiError(400, str(exc), param="messages") from None
        _check_length(len(prompt), wanted, settings.max_prompt_tokens, context)

        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()

        def post(kind: str, index: int, value: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, index, value))

        rows = [
            Row(
                list(prompt),
                wanted,
                body.stop_words,
                on_text=partial(post, "text", i),
                on_finish=partial(post, "finish", i),
            )
            for i in range(body.n)
        ]
        try:
            jobs.submit(
                rows,
                generation_settings(gen, temperature=body.temperature, top_p=body.top_p),
                on_error=partial(post, "error", -1),
            )
        except QueueFull as exc:
            raise ApiError(
                429,
                f"server busy: {exc}",
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": "1"},
            ) from None
        cid = protocol.completion_id()
        readers = [
            ReplyReader(chat.template.tool_format, prefill) if tools else ReplyReader()
            for _ in rows
        ]
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                _stream(cid, settings.model_name, rows, readers, len(prompt), events, usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            await _answered(rows, events, request)
        finally:
            _cancel(rows)
        answers = [
            _read_whole(reader, row, f"{cid} choice {i}")
            for i, (reader, row) in enumerate(zip(readers, rows, strict=True))
        ]
        return protocol.completion(cid, settings.model_name, len(prompt), rows, answers)

    return app


def _read_whole(reader: ReplyReader, row: Row, where: str) -> Answer:
    reader.feed(row.text)
    return reader.finish(row.finish_reason or "stop", where)[1]


async def _stream(
    cid: str,
    model: str,
    rows: list[Row],
    readers: list[ReplyReader],
    prompt_tokens: int,
    events: asyncio.Queue[tuple[str, int, Any]],
    usage: bool,
) -> AsyncIterator[str]:
    """Server-sent events: the role, text pieces as they come (with tools, not those of a
    call: its calls come whole at the end), each choice's finish reason, optionally the usage,
    then ``[DONE]``. A client that hangs up cancels its rows."""

    try:
        yield protocol.chunk(
            cid,
            model,
            [protocol.delta(i, {"role": "assistant", "content": ""}) for i in range(len(rows))],
        )
        finished = 0
        while finished < len(rows):
            kind, index, value = await events.get()
            if kind == "text":
                piece = readers[index].feed(value)
                if piece:
                    yield protocol.chunk(cid, model, [protocol.delta(index, {"content": piece})])
            elif kind == "finish":
                finished += 1
                rest, answer = readers[index].finish(value.finish_reason, f"{cid} choice {index}")
                if rest:
                    yield protocol.chunk(cid, model, [protocol.delta(index, {"content": rest})])
                for call in protocol.call_deltas(index, answer.calls):
                    yield protocol.chunk(cid, model, [call])
                yield protocol.chunk(cid, model, [protocol.delta(index, {}, answer.finish_reason)])
            else:
                body = protocol.error_body(f"generation failed: {value}", kind="server_error")
                yield f"data: {json.dumps(body)}\n\n"
                return
        if usage:
            yield protocol.chunk(cid, model, [], protocol.usage(prompt_tokens, rows))
        yield protocol.STREAM_END
    finally:
        _cancel(rows)


async def _answered(
    rows: list[Row], events: asyncio.Queue[tuple[str, int, Any]], request: "Request"
) -> None:
    """Wait until every row has finished, or until the client hangs up (499): a non-streaming
    client gets nothing from rows it no longer waits for, so the caller cancels them."""
    finished = asyncio.ensure_future(_finished(rows, events))
    gone = asyncio.ensure_future(_hung_up(request))
    try:
        done, _ = await asyncio.wait({finished, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        finished.cancel()
        gone.cancel()
    if finished not in done:
        raise ApiError(
            499,
            "the client closed the connection before the answer was ready",
            code="client_closed_request",
        )
    finished.result()


async def _finished(rows: list[Row], events: asyncio.Queue[tuple[str, int, Any]]) -> None:
    while any(row.finish_reason is None for row in rows):
        kind, _, value = await events.get()
        if kind == "error":
            raise ApiError(500, f"generation failed: {value}", kind="server_error")


async def _hung_up(request: "Request") -> None:
    """Return when the client disconnects; the body has been read, so nothing else arrives."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _cancel(rows: list[Row]) -> None:
    for row in rows:
        row.cancelled = True


async def _read_body(request: "Request", limit: int) -> bytes:
    """The body, refused with 413 beyond `limit` bytes: at once when Content-Length says so,
    else while reading (a chunked body declares no length)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than this server's limit of {limit} bytes",
        code="request_too_large",
    )


def _parse(raw: bytes) -> protocol.ChatCompletionRequest:
    try:
        return protocol.ChatCompletionRequest.model_validate_json(raw)
    except ValidationError as exc:
        message, param = _describe(exc.errors())
        raise ApiError(400, message, param=param) from None


def _check_length(prompt: int, wanted: int, limit: int, context: int | None) -> None:
    if prompt > limit:
        raise ApiError(
            400,
            f"the prompt has {prompt} tokens; this server accepts at most {limit}",
            param="messages",
            code="context_length_exceeded",
        )
    if context is not None and prompt + wanted > context:
        raise ApiError(
            400,
            f"the prompt ({prompt} tokens) plus max_tokens ({wanted}) exceeds the "
            f"model's context of {context} tokens; lower max_tokens",
            param="max_tokens",
            code="context_length_exceeded",
        )


def _describe(errors: Any) -> tuple[str, str | None]:
    """Pydantic validation errors -> one message naming every bad field, and the first."""
    parts, params = [], []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if not _union_member(part)]
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            parts.append(
                f"the request body is not valid JSON ({detail})"
                if detail
                else "the request body is not valid JSON"
            )
            continue
        where = ".".join(loc) or "body"
        params.append(where)
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown parameter '{where}'")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts)) or "invalid request", (params[0] if params else None)


def _union_member(part: object) -> bool:
    """Whether a part of an error's location is pydantic's name for one type of a union
    (``str``, ``list[TextPart]``, ``NamedToolChoice``) rather than a field: clients know
    the field (``tool_choice``), not how this server declares it."""
    if isinstance(part, int):
        return False
    text = str(part)
    return "[" in text or text[:1].isupper() or text in {"str", "int", "float", "bool"}


def serve(
    model: ResolvedModel, settings: ServerSettings, *, host: str = "127.0.0.1", port: int = 8000
) -> None:
    """Load the model and answer HTTP requests until interrupted."""
    import uvicorn

    _check_port(host, port)
    _check_auth(settings, host)
    chat = load_chat_model(model)
    defaults = model.config.generation
    app = create_app(chat, defaults, settings)
    logger.info(
        "serving %s on http://%s:%d/v1 (%d at once, %d waiting at most); defaults for "
        "what a request leaves out: %s",
        settings.model_name,
        host,
        port,
        settings.max_batch,
        settings.max_waiting,
        defaults.model_dump(),
    )
    uvicorn.run(app, host=host, port=port, log_level="info")


def served_name(model: ResolvedModel) -> str:
    """The model id clients see: the adapter's folder name, else that of the weights."""
    return Path(model.adapter or model.weights).name


def _check_port(host: str, port: int) -> None:
    """Fail in a second, not after loading the model, when the address cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"--host {host} --port {port}: cannot listen there "
                f"({exc.strerror or exc}); choose another port"
            ) from None


def _check_auth(settings: ServerSettings, host: str) -> None:
    """Say whenever the server is open to anyone, and refuse to open it to the network unless
    --no-auth asks for that: a forgotten key should not expose the model to every machine."""
    if settings.api_key is not None:
        return
    if settings.no_auth:
        logger.warning(
            "authentication is off (--no-auth): anyone who can reach %s can use the model", host
        )
    elif _is_loopback(host):
        logger.warning(
            "no API key: any program on this machine can use the model; set --api-key "
            "(or $TUNEFORGE_API_KEY), or pass --no-auth to say this is intended"
        )
    else:
        raise UserError(
            f"--host {host} without an API key would let anyone who can reach the "
            f"port use the model; set --api-key (or $TUNEFORGE_API_KEY), or pass "
            f"--no-auth"
        )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
