"""WebDAV storage (`davs://`, `dav://`): dCache, EOS, XRootD's HTTP door, any WebDAV server.

`davs://host:port/path` is `https://host:port/path` spoken WebDAV (`dav://`: plain http, for
test servers); `https://` and `http://` URLs are taken as WebDAV too. Requests go through
webdav4's client (httpx), with the grid's credentials when the environment has them: a WLCG
bearer token read anew for every request (`BEARER_TOKEN_FILE`, else
`$XDG_RUNTIME_DIR/bt_u<uid>`, or `BEARER_TOKEN`), an
X.509 proxy (`X509_USER_PROXY`) as client certificate, and `X509_CERT_DIR` as the certificate
authorities.

What the common servers do, and how this store copes:
- a rename (`MOVE`) replaces its target, and XrdHttp has no `COPY`: renames are one `MOVE`;
- the checksum is asked with `Want-Digest: adler32` (`Digest: adler32=<hex>`); a server that
  answers none has the file read back, streamed (a chunk in memory at a time);
- byte ranges are `GET` requests with a `Range` header, many ranges per request where the
  server answers `multipart/byteranges` (XrdHttp announces no range support, which
  fsspec-style readers then refuse);
- sizes come from `HEAD` (`PROPFIND` of a single file fails on XrdHttp 5.5);
- XrdHttp deletes only empty collections: trees are deleted file by file.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .files import adler32_of_chunks
from .stores import RemoteSettings, Store

SCHEMES = {"davs": "https", "dav": "http", "https": "https", "http": "http"}
READ_BACK_CHUNK = 1 << 20  # bytes in memory at a time while a file is read back to check it


def _base_and_path(url: str) -> tuple[str, str]:
    """(`https://host:port`, `/path`) of a `davs://host:port/path` URL."""
    parts = urlsplit(url)
    return f"{SCHEMES[parts.scheme]}://{parts.netloc}", "/" + parts.path.lstrip("/")


def _token() -> str | None:
    """The WLCG bearer token the environment names (WLCG Bearer Token Discovery)."""
    if os.environ.get("BEARER_TOKEN"):
        return os.environ["BEARER_TOKEN"].strip()
    candidates = [os.environ.get("BEARER_TOKEN_FILE")]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        candidates.append(f"{runtime}/bt_u{os.getuid()}")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text().strip()
    return None


RANGES_PER_GET = 128  # a Range header of up to ~4 kB, which servers accept


def _checked(response: Any, url: str) -> Any:
    """The response, or its 404 as FileNotFoundError and other failures as OSError."""
    if response.status_code == 404:
        raise FileNotFoundError(f"{url}: not found")
    if response.status_code >= 400:
        method = response.request.method
        raise OSError(f"{method} {url}: HTTP {response.status_code} {response.reason_phrase}")
    return response


def _byteranges(response: Any) -> dict[tuple[int, int], bytes] | None:
    """The parts of a `multipart/byteranges` answer by (start, stop), None for another one."""
    kind = response.headers.get("Content-Type", "")
    if response.status_code != 206 or "multipart/byteranges" not in kind:
        return None
    boundary = kind.split("boundary=", 1)[1].strip().strip('"').encode()
    parts: dict[tuple[int, int], bytes] = {}
    for chunk in response.content.split(b"--" + boundary):
        head, separator, body = chunk.partition(b"\r\n\r\n")
        if not separator:
            continue
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-range":
                first, last = value.split()[1].split("/")[0].split("-")
                start, stop = int(first), int(last) + 1
                parts[(start, stop)] = body[: stop - start]
    return parts


def bearer_auth() -> Any:
    """An httpx authentication that reads the token anew for every request: tokens are short
    lived, and whoever renews them rewrites the file while a long job runs."""
    import httpx

    class BearerFromEnvironment(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Any:
            token = _token()
            if token:
                request.headers["Authorization"] = f"Bearer {token}"
            yield request

    return BearerFromEnvironment()


@functools.cache
def _client(base: str, timeout_s: float) -> Any:
    from webdav4.client import Client

    options: dict[str, Any] = {"timeout": timeout_s, "follow_redirects": True}
    if os.environ.get("X509_USER_PROXY"):
        options["cert"] = os.environ["X509_USER_PROXY"]
    if os.environ.get("X509_CERT_DIR"):
        options["verify"] = os.environ["X509_CERT_DIR"]
    return Client(base, auth=bearer_auth(), retry=False, **options)


class WebDAVStore(Store):
    """`davs://` and `dav://` URLs through webdav4."""

    def __init__(self, scheme: str, config: RemoteSettings) -> None:
        super().__init__(scheme, config)
        # servers (by base URL) that answer several ranges at once, or do not
        self._multipart: dict[str, bool] = {}

    def _client(self, url: str) -> tuple[Any, str]:
        base, path = _base_and_path(url)
        return _client(base, self.config.timeout_s), path

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        """A request whose 404 is FileNotFoundError and other failures OSError."""
        client, path = self._client(url)
        return _checked(client.http.request(method, client.join_url(path), **kwargs), url)

    def open_options(self) -> dict[str, Any]:
        """None: uproot does not read these URLs here."""
        return {}

    def info(self, url: str) -> dict[str, Any]:
        """`HEAD`: size and type."""
        response = self._request("HEAD", url)
        return {"size": int(response.headers.get("Content-Length", 0)), "type": "file"}

    def checksum(self, url: str) -> str:
        """The server's adler32 (`Want-Digest`), else the bytes read back."""
        response = self._request("HEAD", url, headers={"Want-Digest": "adler32"})
        for digest in response.headers.get("Digest", "").split(","):
            algorithm, _, value = digest.strip().partition("=")
            if algorithm.lower() == "adler32" and value:
                return str(value).strip().lower().rjust(8, "0")
        return self._adler32_read_back(url)

    def _adler32_read_back(self, url: str) -> str:
        """adler32 of the file's bytes as they come (`GET`, streamed): an output of any size
        costs a chunk of memory, not its size."""
        client, path = self._client(url)
        with client.http.stream("GET", client.join_url(path)) as response:
            return adler32_of_chunks(_checked(response, url).iter_bytes(READ_BACK_CHUNK))

    def upload(self, local: Path, url: str) -> None:
        """`PUT` of the file, streamed."""
        client, path = self._client(url)
        client.upload_file(local, path, overwrite=True)

    def rename(self, source: str, target: str) -> None:
        """One `MOVE`, replacing the target."""
        client, path = self._client(source)
        client.move(path, _base_and_path(target)[1], overwrite=True)

    def remove(self, url: str) -> None:
        """`DELETE`."""
        self._request("DELETE", url)

    def remove_tree(self, url: str) -> None:
        """What the collection holds, deepest first, then the collection (XrdHttp deletes
        only empty collections)."""
        client, path = self._client(url)
        if not client.exists(path):
            raise FileNotFoundError(f"{url}: not found")
        for entry in client.ls(path, detail=True):
            child = f"{url.rstrip('/')}/{entry['name'].rstrip('/').rsplit('/', 1)[-1]}"
            if entry.get("type") == "directory":
                self.remove_tree(child)
            else:
                self._request("DELETE", child)
        self._request("DELETE", url)

    def makedirs(self, url: str) -> None:
        """`MKCOL` of every missing level."""
        client, path = self._client(url)
        current = ""
        for part in [p for p in path.split("/") if p]:
            current += "/" + part
            if not client.exists(current):
                client.mkdir(current)

    def listdir(self, url: str) -> list[str]:
        """`PROPFIND` (depth 1): the files of a collection."""
        client, path = self._client(url)
        if not client.exists(path):
            raise FileNotFoundError(f"{url}: not found")
        entries = client.ls(path, detail=True)
        names = [entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in entries]
        kinds = [entry.get("type") for entry in entries]
        return [
            f"{url.rstrip('/')}/{name}"
            for name, kind in zip(names, kinds, strict=True)
            if kind != "directory"
        ]

    def read(self, url: str) -> bytes:
        """`GET`."""
        content: bytes = self._request("GET", url).content
        return content

    def read_ranges(self, url: str, starts: list[int], stops: list[int]) -> list[bytes]:
        """Ranged `GET`s: up to `RANGES_PER_GET` ranges in one request where the server answers
        `multipart/byteranges` (XrdHttp, dCache), else one request per range."""
        wanted = [(start, stop) for start, stop in zip(starts, stops, strict=True) if stop > start]
        found: dict[tuple[int, int], bytes] = {}
        for first in range(0, len(wanted), RANGES_PER_GET):
            group = wanted[first : first + RANGES_PER_GET]
            found.update(self._get_ranges(url, group))
        return [found.get((start, stop), b"") for start, stop in zip(starts, stops, strict=True)]

    def _get_ranges(self, url: str, ranges: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        server = _base_and_path(url)[0]
        if len(ranges) > 1 and self._multipart.get(server, True):
            spec = ",".join(f"{start}-{stop - 1}" for start, stop in ranges)
            response = self._request("GET", url, headers={"Range": f"bytes={spec}"})
            parts = _byteranges(response)
            if parts is not None and all(r in parts for r in ranges):
                self._multipart[server] = True
                return parts
            self._multipart[server] = False  # one range per request from now on
        found = {}
        whole: bytes | None = None  # a server that ignores Range sent the file once: enough
        for start, stop in ranges:
            if whole is None:
                response = self._request("GET", url, headers={"Range": f"bytes={start}-{stop - 1}"})
                if response.status_code != 200:
                    found[(start, stop)] = response.content
                    continue
                whole = response.content
            found[(start, stop)] = whole[start:stop]
        return found

    def reset(self) -> None:
        """Drops the cached clients (and their connections)."""
        _client.cache_clear()
