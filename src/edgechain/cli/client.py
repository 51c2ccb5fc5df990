"""The client side of the HTTP API: the client config file and a fleet of node URLs.

Client config (TOML; ``--client FILE`` or ``EDGECHAIN_CLIENT``)::

    nodes = ["http://127.0.0.1:8001", "http://127.0.0.1:8003"]
    key = "operator.key"        # keystore file (crypto/keystore.py), relative to this file
    admin_key = "admin.key"     # optional: for `edgechain admin ...`

Requests go to the first node that answers, in the order given: a node that cannot be
reached (refused, timed out) is skipped, a node that answers with an error is not
(its error is the answer). ``http.client``, not urllib: no proxy is ever used.
"""

from __future__ import annotations

import http.client
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from edgechain.cli.common import DEFAULT_HTTP_TIMEOUT_S, EXIT_FAILED, EXIT_USAGE, CliError
from edgechain.errors import KeystoreError
from edgechain.types import SecretKey

CLIENT_ENV = "EDGECHAIN_CLIENT"
DEFAULT_CLIENT_FILE = "client.toml"
MAX_REPLY_BYTES = 64 * 1024 * 1024
MAX_PARALLEL = 16
"""Nodes asked at once by ``Fleet.get_each``."""
_MEMBERS = frozenset({"nodes", "key", "admin_key"})


@dataclass(frozen=True)
class ClientConfig:
    nodes: tuple[str, ...]
    key: Path | None = None
    admin_key: Path | None = None
    path: Path | None = None
    """The file it was read from (for messages)."""


def parse_client_config(data: Mapping[str, Any], base: Path, where: str) -> ClientConfig:
    """Check a parsed client config; key paths are relative to ``base``."""
    unknown = sorted(set(data) - _MEMBERS)
    if unknown:
        raise CliError(f"{where}: unknown member(s) {unknown}", EXIT_USAGE)
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) for n in nodes):
        raise CliError(f"{where}: 'nodes' must be a non-empty list of URLs", EXIT_USAGE)
    for url in nodes:
        parse_node_url(url, where)

    def key_path(name: str) -> Path | None:
        value = data.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise CliError(f"{where}: {name!r} must be a file name", EXIT_USAGE)
        return base / Path(value).expanduser()

    return ClientConfig(tuple(nodes), key_path("key"), key_path("admin_key"))


def load_client_config(path: Path) -> ClientConfig:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise CliError(f"cannot read client config {path}: {exc.strerror}", EXIT_USAGE) from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"{path}: not valid TOML: {exc}", EXIT_USAGE) from None
    config = parse_client_config(data, path.parent, str(path))
    return ClientConfig(config.nodes, config.key, config.admin_key, path)


def find_client_config(flag: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """``--client``, else ``$EDGECHAIN_CLIENT``, else ``./client.toml`` if it exists."""
    if flag:
        return Path(flag)
    if environ.get(CLIENT_ENV):
        return Path(environ[CLIENT_ENV])
    if (cwd / DEFAULT_CLIENT_FILE).exists():
        return cwd / DEFAULT_CLIENT_FILE
    raise CliError(
        f"no client config: pass --client FILE or set {CLIENT_ENV} "
        "(`edgechain testnet` writes one into its run directory)",
        EXIT_USAGE,
    )


def write_client_config(
    path: Path, nodes: Sequence[str], key: str, admin_key: str | None = None
) -> None:
    """Write a client config (atomically: a reader never sees half a file)."""
    lines = ["nodes = [" + ", ".join(json.dumps(n) for n in nodes) + "]"]
    lines.append(f"key = {json.dumps(key)}")
    if admin_key is not None:
        lines.append(f"admin_key = {json.dumps(admin_key)}")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("\n".join(lines) + "\n")
    os.replace(temporary, path)


def load_key(path: Path | None, what: str, config: ClientConfig) -> SecretKey:
    """The secret key of ``what`` ("key" or "admin_key") named in the client config."""
    if path is None:
        where = config.path or "the client config"
        raise CliError(f"{where} names no {what} (a keystore file) to sign with", EXIT_USAGE)
    from edgechain.crypto.keystore import load_keystore  # BLS: only a command that signs

    try:
        return load_keystore(path)
    except KeystoreError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


# --- HTTP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeUrl:
    host: str
    port: int

    def __str__(self) -> str:
        return f"http://{self.host}:{self.port}"


def parse_node_url(text: str, where: str = "node URL") -> NodeUrl:
    """``http://HOST:PORT`` (``HOST:PORT`` alone is accepted too)."""
    parts = urlsplit(text if "://" in text else "http://" + text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise CliError(f"{where}: {text!r} is not http://HOST:PORT", EXIT_USAGE)
    return NodeUrl(parts.hostname, port)


def read_local_node_url(data_dir: Path) -> NodeUrl:
    """The API of the node running on ``data_dir`` (its ``api.json``, ``API_FILE``),
    for the local commands (``node leave``, ``node health``). Raises OSError (no such
    file: the node does not serve), ValueError, KeyError or CliError (not a URL)."""
    from edgechain.api.auth import API_FILE

    return parse_node_url(json.loads((data_dir / API_FILE).read_text())["url"])


class ApiError(CliError):
    """A node answered with an HTTP error (``{"error": ..., "field": ...}``)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        text = f"{message} (field {field})" if field else message
        super().__init__(text, EXIT_FAILED)
        self.status = status
        self.field = field


class UnreachableError(CliError):
    """No configured node answered."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def request_json(
    url: NodeUrl,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = DEFAULT_HTTP_TIMEOUT_S,
    token: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> Any:
    """One request to one node (with ``token``: as a local caller holding its API
    token); ApiError for an HTTP error, Unreachable if no answer."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    headers.update(extra_headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection(url.host, url.port, timeout=timeout)
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read(MAX_REPLY_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise UnreachableError(f"{url}: {exc}") from None
    finally:
        connection.close()
    try:
        reply = json.loads(raw) if raw else None
    except ValueError:
        raise ApiError(response.status, f"{url}{path}: HTTP {response.status}, not JSON") from None
    if response.status >= 400:
        if isinstance(reply, dict) and isinstance(reply.get("error"), str):
            field = reply.get("field")
            raise ApiError(
                response.status, reply["error"], field if isinstance(field, str) else None
            )
        raise ApiError(response.status, f"{url}{path}: HTTP {response.status}")
    return reply


def quote_segment(text: str) -> str:
    """A path segment (an app name may hold anything)."""
    return quote(text, safe="")


class Fleet:
    """The configured nodes; each request goes to the first one that answers."""

    def __init__(self, urls: Sequence[str], timeout: float = DEFAULT_HTTP_TIMEOUT_S) -> None:
        if not urls:
            raise CliError("no node URLs configured", EXIT_USAGE)
        self.urls = [parse_node_url(u) for u in urls]
        self.timeout = timeout
        self.preferred = 0
        self._unanswered: dict[NodeUrl, UnreachableError] = {}
        """Nodes that did not answer in this command: not waited for again (with the
        first of five nodes paused, ``apps list`` took two timeouts, 10 s, not one)."""

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The answer of the first node that answers (the last one that did, first)."""
        order = self.urls[self.preferred :] + self.urls[: self.preferred]
        failures = []
        for url in order:
            try:
                reply = request_json(url, method, path, body, self.timeout)
            except UnreachableError as exc:
                failures.append(str(exc))
                self._unanswered[url] = exc
                continue
            self.preferred = self.urls.index(url)
            self._unanswered.pop(url, None)
            return reply
        raise UnreachableError("no node answered: " + "; ".join(failures))

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def get_each(self, path: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Every node's answer (``CliError`` where it had none), by URL; asked all at
        once, so a node that does not answer costs one timeout, not one each."""

        def ask(url: NodeUrl) -> Any:
            if url in self._unanswered:
                return self._unanswered[url]
            try:
                return request_json(url, "GET", path, None, self.timeout, extra_headers=headers)
            except CliError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(self.urls))) as pool:
            answers = list(pool.map(ask, self.urls))
        return {str(url): answer for url, answer in zip(self.urls, answers, strict=True)}
