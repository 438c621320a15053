"""A Hugging Face Hub on 127.0.0.1 for tests (facts: ../shared/HUB_TESTING.md).

olah (offline mode, `mirrors-path`) serves the read side from plain git repos. In front of it, this
module's small server adds the write routes the `huggingface_hub` client uses (create repo, whoami,
validate-yaml, preupload, LFS batch + PUT, commit, branch), stores pushes in olah's layout (git repos,
LFS pointer files, objects under `.git/lfs/objects/aa/bb/<oid>`), checks the token, fixes two olah
gaps (model info without a revision; missing repo/revision/file -> 404 with the Hub's error code) and
answers 404 to every route it does not know, so a client upgrade that needs a new route fails loudly.

    with HubServer(tmp_path, token="hf_test") as hub:
        subprocess.run([...], env=hub.client_env(hf_home))

By hand: `python -m tests.hubserver --root /tmp/hub` prints the endpoint and token, Ctrl-C stops.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

import yaml

logger = logging.getLogger(__name__)

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
T = r"(models|datasets|spaces)"
NAME = r"([A-Za-z0-9][A-Za-z0-9._-]*)"
REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
LFS_POINTER_RE = re.compile(r"^version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize (\d+)\n$")
LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in [
        "*.bin",
        "*.pt",
        "*.pth",
        "*.ckpt",
        "*.safetensors",
        "*.onnx",
        "*.h5",
        "*.pkl",
        "*.npy",
        "*.npz",
        "*.zip",
        "*.gz",
        "*.tar",
        "*.tflite",
        "*.msgpack",
        "*.parquet",
        "*.arrow",
        "*tfevents*",
    ]
)

# What the Hub's validate-yaml checks, reduced to what our cards and Space READMEs use.
LICENSES = {
    "apache-2.0",
    "mit",
    "agpl-3.0",
    "gpl-3.0",
    "lgpl-3.0",
    "bsd-2-clause",
    "bsd-3-clause",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0",
    "cc0-1.0",
    "openrail",
    "mpl-2.0",
    "other",
    "unknown",
}
PIPELINE_TAGS = {
    "image-classification",
    "object-detection",
    "image-segmentation",
    "zero-shot-image-classification",
    "image-feature-extraction",
    "keypoint-detection",
    "text-classification",
    "other",
}
SDKS = {"gradio", "streamlit", "docker", "static"}
COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def validate_metadata(content: str, repo_type: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the YAML front matter of a README.md, like the Hub's /api/validate-yaml."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.S)
    if not match:
        return [], ["empty or missing yaml metadata in repo card"]
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        return [f"YAML parse error: {error}"], []
    if data is None:
        return [], ["empty or missing yaml metadata in repo card"]
    if not isinstance(data, dict):
        return ["metadata must be a YAML mapping"], []
    errors: list[str] = []

    def strings(key: str, value) -> None:
        if isinstance(value, str):
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors.append(f'"{key}" must be a string or a list of strings')

    for key in ("tags", "datasets", "language", "models", "base_model"):
        if key in data:
            strings(key, data[key])
    if "license" in data:
        if not isinstance(data["license"], str) or data["license"] not in LICENSES:
            errors.append(f'"license" must be one of the Hub licence ids, got {data["license"]!r}')
        elif data["license"] == "other" and "license_name" not in data:
            errors.append('"license_name" is required when "license" is "other"')
    if repo_type == "model":
        if "library_name" in data and not isinstance(data["library_name"], str):
            errors.append('"library_name" must be a string')
        if "pipeline_tag" in data and data["pipeline_tag"] not in PIPELINE_TAGS:
            errors.append(f'"pipeline_tag" {data["pipeline_tag"]!r} is not a known pipeline tag')
        if "model-index" in data:
            errors += _model_index_errors(data["model-index"])
    if repo_type == "space":
        if data.get("sdk") not in SDKS:
            errors.append(f'"sdk" must be one of {sorted(SDKS)}')
        if data.get("sdk") in ("gradio", "streamlit") and not isinstance(data.get("sdk_version"), str):
            errors.append('"sdk_version" must be a string such as "5.0.0"')
        for key in ("title", "app_file", "python_version", "emoji", "short_description"):
            if key in data and not isinstance(data[key], str):
                errors.append(f'"{key}" must be a string')
        if len(str(data.get("short_description", ""))) > 60:
            errors.append('"short_description" must be at most 60 characters')
        for key in ("colorFrom", "colorTo"):
            if key in data and data[key] not in COLORS:
                errors.append(f'"{key}" must be one of {sorted(COLORS)}')
    return errors, []


def _model_index_errors(model_index) -> list[str]:
    if not isinstance(model_index, list) or not model_index:
        return ['"model-index" must be a non-empty list']
    errors = []
    for i, entry in enumerate(model_index):
        where = f"model-index[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(f'"{where}.name" is required')
            continue
        results = entry.get("results")
        if not isinstance(results, list) or not results:
            errors.append(f'"{where}.results" must be a non-empty list')
            continue
        for j, result in enumerate(results):
            at = f"{where}.results[{j}]"
            if not isinstance(result, dict):
                errors.append(f'"{at}" must be a mapping')
                continue
            if not isinstance(result.get("task"), dict) or not isinstance(result["task"].get("type"), str):
                errors.append(f'"{at}.task.type" is required')
            dataset = result.get("dataset")
            if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("name", "type")):
                errors.append(f'"{at}.dataset" needs "name" and "type"')
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f'"{at}.metrics" must be a non-empty list')
                continue
            for k, metric in enumerate(metrics):
                if not isinstance(metric, dict) or not isinstance(metric.get("type"), str):
                    errors.append(f'"{at}.metrics[{k}].type" is required')
                elif not isinstance(metric.get("value"), (int, float, str)) or isinstance(metric.get("value"), bool):
                    errors.append(f'"{at}.metrics[{k}].value" must be a number or a string')
    return errors


class GitStore:
    """Repos in olah's mirror layout: <mirrors>/<models|datasets|spaces>/<namespace>/<name>/.git"""

    def __init__(self, mirrors: Path, lfs_staging: Path):
        self.mirrors = mirrors
        self.staging = lfs_staging
        self.lock = threading.Lock()

    def path(self, repo_type: str, repo_id: str) -> Path:
        return self.mirrors / f"{repo_type}s" / repo_id

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return (self.path(repo_type, repo_id) / ".git").is_dir()

    def meta(self, repo_type: str, repo_id: str) -> dict:
        return json.loads((self.path(repo_type, repo_id) / ".git" / "hub.json").read_text())

    def git(
        self, repo: Path, *args: str, data: Optional[bytes] = None, env: Optional[dict] = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        base = {
            "GIT_AUTHOR_NAME": "hub",
            "GIT_AUTHOR_EMAIL": "hub@127.0.0.1",
            "GIT_COMMITTER_NAME": "hub",
            "GIT_COMMITTER_EMAIL": "hub@127.0.0.1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(repo),
        }
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            input=data,
            capture_output=True,
            check=check,
            env={**os.environ, **base, **(env or {})},
        )

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> Optional[str]:
        result = self.git(
            self.path(repo_type, repo_id), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", check=False
        )
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def entry(self, repo_type: str, repo_id: str, commit: str, path: str) -> Optional[tuple[str, bytes]]:
        """(blob sha, content) of a file at a commit, or None."""
        repo = self.path(repo_type, repo_id)
        kind = self.git(repo, "cat-file", "-t", f"{commit}:{path}", check=False)
        if kind.returncode != 0 or kind.stdout.strip() != b"blob":
            return None
        sha = self.git(repo, "rev-parse", f"{commit}:{path}").stdout.decode().strip()
        return sha, self.git(repo, "cat-file", "blob", sha).stdout

    def create(self, repo_type: str, repo_id: str, meta: dict) -> None:
        repo = self.path(repo_type, repo_id)
        repo.mkdir(parents=True)
        self.git(repo, "init", "-q", "-b", "main")
        (repo / ".git" / "hub.json").write_text(json.dumps(meta))
        self.commit(
            repo_type, repo_id, "main", "initial commit", "", [("file", ".gitattributes", GITATTRIBUTES.encode())]
        )

    def lfs_object(self, repo_type: str, repo_id: str, oid: str) -> Path:
        return self.path(repo_type, repo_id) / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid

    def commit(
        self,
        repo_type: str,
        repo_id: str,
        branch: str,
        summary: str,
        description: str,
        operations: list[tuple[str, str, object]],
    ) -> str:
        """Apply ('file', path, bytes) / ('lfsFile', path, (oid, size)) / ('deletedFile'|'deletedFolder', path,
        None) on top of `branch` in one commit; returns the commit sha. Raises LookupError for a missing path."""
        repo = self.path(repo_type, repo_id)
        head = self.resolve(repo_type, repo_id, f"refs/heads/{branch}")
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if head:
                self.git(repo, "read-tree", head, env=env)
            for kind, path, value in operations:
                if kind in ("deletedFile", "deletedFolder"):
                    listed = self.git(repo, "ls-files", "-z", "--", path, env=env).stdout.split(b"\0")
                    paths = [p.decode() for p in listed if p]
                    if kind == "deletedFile":
                        paths = [p for p in paths if p == path]
                    if not paths:
                        raise LookupError(f"A file with this name doesn't exist: {path}")
                    self.git(repo, "update-index", "--force-remove", "--", *paths, env=env)
                    continue
                if kind == "lfsFile":
                    oid, size = value
                    target = self.lfs_object(repo_type, repo_id, oid)
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(self.staging / oid, target.with_suffix(".tmp"))
                        os.replace(target.with_suffix(".tmp"), target)
                    value = LFS_POINTER.format(oid=oid, size=size).encode()
                sha = self.git(repo, "hash-object", "-w", "--stdin", data=value).stdout.decode().strip()
                self.git(repo, "update-index", "--add", "--cacheinfo", f"100644,{sha},{path}", env=env)
            tree = self.git(repo, "write-tree", env=env).stdout.decode().strip()
        message = summary + (f"\n\n{description}" if description else "")
        parents = ["-p", head] if head else []
        commit = self.git(repo, "commit-tree", tree, *parents, "-m", message).stdout.decode().strip()
        self.git(repo, "update-ref", f"refs/heads/{branch}", commit, *([head] if head else []))
        return commit


@dataclass
class HubServer:
    """olah + the write front end, both on 127.0.0.1 free ports; files under `root`."""

    root: Path
    token: str = field(default_factory=lambda: "hf_" + secrets.token_hex(16))
    user: str = "tester"
    orgs: tuple[str, ...] = ("hybrid-org",)
    endpoint: str = ""

    def __post_init__(self):
        self.root = Path(self.root)
        self.store = GitStore(self.root / "mirrors", self.root / "lfs-staging")
        self.log_path = self.root / "logs" / "front.log"
        self._olah: Optional[subprocess.Popen] = None
        self._front: Optional[ThreadingHTTPServer] = None
        self._secret = secrets.token_bytes(16)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 90) -> "HubServer":
        for sub in ("mirrors/models", "mirrors/datasets", "mirrors/spaces", "lfs-staging", "olah-cache", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.olah_port = free_port()
        config = self.root / "olah.toml"
        config.write_text(
            f'[basic]\nhost = "127.0.0.1"\nport = {self.olah_port}\nrepos-path = "{self.root / "olah-cache"}"\n'
            f'mirrors-path = ["{self.root / "mirrors"}"]\n\n[accessibility]\noffline = true\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        with open(self.root / "logs" / "olah.log", "ab") as log:
            self._olah = subprocess.Popen(
                [sys.executable, "-m", "olah.server", "--config", str(config), "--log-path", str(self.root / "logs")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        handler = type("Handler", (_Handler,), {"hub": self})
        self._front = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._front.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._front.server_address[1]}"
        threading.Thread(target=self._front.serve_forever, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            if self._olah.poll() is not None:
                self.stop()
                raise RuntimeError(f"olah exited with {self._olah.returncode}; see {self.root / 'logs' / 'olah.log'}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.olah_port, timeout=2)
                connection.request("GET", "/")
                connection.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"olah did not answer within {timeout:.0f} s")
                time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self._front is not None:
            self._front.shutdown()
            self._front.server_close()
            self._front = None
        if self._olah is not None:
            self._olah.terminate()
            try:
                self._olah.wait(10)
            except subprocess.TimeoutExpired:
                self._olah.kill()
                self._olah.wait()
            self._olah = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client_env(self, hf_home: Path, token: Optional[str] = "__server__", **extra: str) -> dict:
        """Environment for a client subprocess: endpoint, its own HF_HOME, no Xet, the token (or none)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_HOME=str(hf_home),
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
        )
        if token == "__server__":
            token = self.token
        if token is not None:
            env["HF_TOKEN"] = token
        env.update(extra)
        return env

    def sign(self, oid: str) -> str:
        return hmac.new(self._secret, oid.encode(), hashlib.sha256).hexdigest()

    def url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{PREFIX[repo_type]}{repo_id}"


class HubError(Exception):
    def __init__(self, status: int, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    ROUTES = [
        ("GET", r"^/api/whoami-v2$", "whoami"),
        ("POST", r"^/api/repos/create$", "create_repo"),
        ("POST", r"^/api/validate-yaml$", "validate_yaml"),
        ("POST", rf"^/api/{T}/{NAME}/{NAME}/preupload/([^/]+)$", "preupload"),
        ("POST", rf"^/api/{T}/{NAME}/{NAME}/commit/([^/]+)$", "commit"),
        ("POST", rf"^/api/{T}/{NAME}/{NAME}/branch/([^/]+)$", "branch"),
        ("POST", rf"^/(datasets/|spaces/)?{NAME}/{NAME}\.git/info/lfs/objects/batch$", "lfs_batch"),
        ("PUT", r"^/lfs-upload/([0-9a-f]{64})$", "lfs_put"),
        ("GET", rf"^/api/{T}/{NAME}/{NAME}$", "info_default"),
        ("GET", rf"^/api/{T}/{NAME}/{NAME}/revision/([^/]+)$", "read_revision"),
        ("GET", rf"^/api/{T}/{NAME}/{NAME}/tree/([^/]+)(/.*)?$", "read_tree"),
        ("GET", rf"^/api/{T}/{NAME}/{NAME}/commits/([^/]+)$", "read_revision"),
        ("POST", rf"^/api/{T}/{NAME}/{NAME}/paths-info/([^/]+)$", "read_revision"),
        ("GET", rf"^/api/{T}/{NAME}/{NAME}/refs$", "read_repo"),
        ("GET", rf"^/(datasets/|spaces/)?{NAME}/{NAME}/resolve/([^/]+)/(.+)$", "resolve"),
    ]

    # --- plumbing ------------------------------------------------------------------------------
    def log_message(self, format: str, *args) -> None:  # request line and status only, never headers
        with open(self.hub.log_path, "a") as log:
            log.write("%s %s\n" % (self.log_date_time_string(), format % args))

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json_body(self):
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"request body is not JSON: {error}")

    def _send(self, status: int, body: bytes = b"", headers: Optional[dict] = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if not any(k.lower() == "content-length" for k in (headers or {})):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: Optional[dict] = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        self.body = self._body() if method in ("POST", "PUT", "DELETE") else b""
        try:
            self.authenticated = self._check_token()
            for route_method, pattern, name in self.ROUTES:
                if route_method == method or (route_method == "GET" and method == "HEAD"):
                    match = re.match(pattern, path)
                    if match:
                        return getattr(self, name)(*match.groups())
            raise HubError(404, f"the test hub has no route for {method} {path}")
        except HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._json(error.status, {"error": error.message}, headers)
        except Exception as error:  # a server bug: say so instead of hanging the client
            logger.exception("test hub error")
            self._json(500, {"error": f"test hub internal error: {type(error).__name__}: {error}"})

    def _check_token(self) -> bool:
        header = self.headers.get("Authorization")
        if header is None:
            return False
        token = header[7:] if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(token.encode(), self.hub.token.encode()):
            raise HubError(401, "Invalid credentials in Authorization header")
        return True

    def _require_write(self, namespace: str) -> None:
        if not self.authenticated:
            raise HubError(401, "You must be authenticated to write to the Hub")
        if namespace not in (self.hub.user, *self.hub.orgs):
            raise HubError(403, f"You don't have the rights to write to the namespace {namespace}")

    def _repo(self, repo_type: str, repo_id: str) -> None:
        store = self.hub.store
        if not store.exists(repo_type, repo_id) or (
            store.meta(repo_type, repo_id)["private"] and not self.authenticated
        ):
            raise HubError(404, "Repository not found", "RepoNotFound")

    def _revision(self, repo_type: str, repo_id: str, revision: str) -> str:
        self._repo(repo_type, repo_id)
        commit = self.hub.store.resolve(repo_type, repo_id, unquote(revision))
        if commit is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    def _forward(self, path: str) -> None:
        """Send the request on to olah and relay its answer (read whole: test files are small)."""
        query = urlsplit(self.path).query
        connection = http.client.HTTPConnection("127.0.0.1", self.hub.olah_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection")}
        connection.request(self.command, path + (f"?{query}" if query else ""), body=self.body or None, headers=headers)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        relayed = {
            k: v
            for k, v in response.getheaders()
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server")
        }
        if self.command == "HEAD" and response.getheader("Content-Length"):
            relayed["Content-Length"] = response.getheader("Content-Length")
        if "Location" in relayed:  # keep the client on this front end
            relayed["Location"] = relayed["Location"].replace(
                f"http://127.0.0.1:{self.hub.olah_port}", self.hub.endpoint
            )
        self._send(response.status, body, relayed)

    # --- write side ----------------------------------------------------------------------------
    def whoami(self):
        if not self.authenticated:
            raise HubError(401, "Invalid credentials in Authorization header")
        self._json(
            200,
            {
                "type": "user",
                "name": self.hub.user,
                "fullname": self.hub.user,
                "orgs": [{"type": "org", "name": org} for org in self.hub.orgs],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            },
        )

    def create_repo(self):
        body = self._json_body()
        repo_type = body.get("type") or "model"
        name, namespace = body.get("name"), body.get("organization") or self.hub.user
        if repo_type not in PREFIX:
            raise HubError(400, f"invalid repo type {repo_type!r}")
        if not isinstance(name, str) or not REPO_NAME.match(name) or "--" in name or ".." in name:
            raise HubError(400, f"invalid repo name {name!r}")
        self._require_write(namespace)
        repo_id = f"{namespace}/{name}"
        url = self.hub.url(repo_type, repo_id)
        if repo_type == "space" and body.get("sdk") not in SDKS:
            raise HubError(400, f"Space SDK must be one of {sorted(SDKS)}")
        with self.hub.store.lock:
            if self.hub.store.exists(repo_type, repo_id):
                return self._json(409, {"error": f"You already created this {repo_type} repo", "url": url})
            private = body.get("private") or body.get("visibility") == "private"
            self.hub.store.create(repo_type, repo_id, {"private": bool(private), "sdk": body.get("sdk")})
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self):
        body = self._json_body()
        if not isinstance(body.get("content"), str):
            raise HubError(400, '"content" must be the README.md text')
        errors, warnings = validate_metadata(body["content"], body.get("repoType") or "model")
        self._json(
            400 if errors else 200,
            {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]},
        )

    def preupload(self, type_plural, namespace, name, revision):
        repo_type, repo_id = TYPES[type_plural], f"{namespace}/{name}"
        self._require_write(namespace)
        commit = self._revision(repo_type, repo_id, revision)
        files = []
        for item in self._json_body().get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            lfs = item["size"] > LFS_THRESHOLD or b"\0" in sample or self._lfs_pattern(repo_type, repo_id, item["path"])
            answer = {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            existing = self.hub.store.entry(repo_type, repo_id, commit, item["path"])
            if existing:  # lets the client skip unchanged files, as on the Hub
                pointer = LFS_POINTER_RE.match(existing[1].decode("utf-8", "replace"))
                answer["oid"] = pointer.group(1) if pointer else existing[0]
            files.append(answer)
        self._json(200, {"files": files, "commitOid": commit})

    def _lfs_pattern(self, repo_type: str, repo_id: str, path: str) -> bool:
        result = self.hub.store.git(self.hub.store.path(repo_type, repo_id), "check-attr", "filter", "--", path)
        return result.stdout.decode().strip().endswith(": lfs")

    def lfs_batch(self, prefix, namespace, name):
        repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        repo_id = f"{namespace}/{name}"
        self._require_write(namespace)
        self._repo(repo_type, repo_id)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], obj["size"]
            answer = {"oid": oid, "size": size, "authenticated": True}
            staged = self.hub.store.staging / oid
            if not (staged.exists() or self.hub.store.lfs_object(repo_type, repo_id, oid).exists()):
                href = f"{self.hub.endpoint}/lfs-upload/{oid}?size={size}&sig={self.hub.sign(oid)}"
                answer["actions"] = {"upload": {"href": href, "expires_in": 3600}}
            objects.append(answer)
        self._json(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, oid):
        query = dict(part.split("=", 1) for part in urlsplit(self.path).query.split("&") if "=" in part)
        if not hmac.compare_digest(query.get("sig", ""), self.hub.sign(oid)):
            raise HubError(403, "invalid upload signature")
        if hashlib.sha256(self.body).hexdigest() != oid or str(len(self.body)) != query.get("size"):
            raise HubError(400, "uploaded bytes do not match the announced oid/size")
        target = self.hub.store.staging / oid
        temp = target.with_suffix(f".{threading.get_ident()}.tmp")
        temp.write_bytes(self.body)
        os.replace(temp, target)
        self._send(200)

    def commit(self, type_plural, namespace, name, revision):
        repo_type, repo_id = TYPES[type_plural], f"{namespace}/{name}"
        self._require_write(namespace)
        branch = unquote(revision)
        head = self._revision(repo_type, repo_id, f"refs/heads/{branch}")
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != head:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        operations = []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if not path or path.startswith("/") or ".." in path.split("/") or path.split("/")[0] == ".git":
                raise HubError(400, f"invalid path in commit: {path!r}")
            if key == "file":
                operations.append(("file", path, base64.b64decode(value["content"])))
            elif key == "lfsFile":
                oid, size = value["oid"], value["size"]
                staged = self.hub.store.staging / oid
                if not (staged.exists() or self.hub.store.lfs_object(repo_type, repo_id, oid).exists()):
                    raise HubError(400, f"LFS object {oid} for {path} was never uploaded")
                operations.append(("lfsFile", path, (oid, size)))
            elif key in ("deletedFile", "deletedFolder"):
                operations.append((key, path.rstrip("/"), None))
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        with self.hub.store.lock:
            try:
                sha = self.hub.store.commit(
                    repo_type, repo_id, branch, header.get("summary", ""), header.get("description", ""), operations
                )
            except LookupError as error:
                raise HubError(404, str(error), "EntryNotFound")
        self._json(
            200,
            {
                "success": True,
                "commitOid": sha,
                "pullRequestUrl": None,
                "commitUrl": f"{self.hub.url(repo_type, repo_id)}/commit/{sha}",
            },
        )

    def branch(self, type_plural, namespace, name, branch):
        repo_type, repo_id, branch = TYPES[type_plural], f"{namespace}/{name}", unquote(branch)
        self._require_write(namespace)
        self._repo(repo_type, repo_id)
        store = self.hub.store
        repo = store.path(repo_type, repo_id)
        if store.git(repo, "check-ref-format", "--branch", branch, check=False).returncode != 0:
            raise HubError(400, f"invalid branch name {branch!r}")
        start = self._revision(repo_type, repo_id, self._json_body().get("startingPoint") or "main")
        with store.lock:
            if store.resolve(repo_type, repo_id, f"refs/heads/{branch}"):
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            store.git(repo, "update-ref", f"refs/heads/{branch}", start)
        self._json(200, {})

    # --- read side (olah, with its gaps fixed) -------------------------------------------------
    def info_default(self, type_plural, namespace, name):
        # olah answers 401 here in offline mode: ask it for the default branch explicitly.
        self._revision(TYPES[type_plural], f"{namespace}/{name}", "main")
        self._forward(f"/api/{type_plural}/{namespace}/{name}/revision/main")

    def read_revision(self, type_plural, namespace, name, revision, *rest):
        self._revision(TYPES[type_plural], f"{namespace}/{name}", revision)
        self._forward(urlsplit(self.path).path)

    def read_tree(self, type_plural, namespace, name, revision, path):
        # olah only routes /tree/{rev}/{path}; without a path it redirects, so ask for the root directly.
        self._revision(TYPES[type_plural], f"{namespace}/{name}", revision)
        self._forward(f"/api/{type_plural}/{namespace}/{name}/tree/{revision}{path or '/'}")

    def read_repo(self, type_plural, namespace, name):
        self._repo(TYPES[type_plural], f"{namespace}/{name}")
        self._forward(urlsplit(self.path).path)

    def resolve(self, prefix, namespace, name, revision, path):
        repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        repo_id = f"{namespace}/{name}"
        commit = self._revision(repo_type, repo_id, revision)
        if self.hub.store.entry(repo_type, repo_id, commit, unquote(path)) is None:
            # olah answers 401 RepositoryNotFound here; clients that fall back to another file need this 404.
            raise HubError(404, "Entry not found", "EntryNotFound")
        self._forward(urlsplit(self.path).path)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="folder for repos and logs (default: a temp folder)")
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="hub-"))
    hub = HubServer(root, **({"token": args.token} if args.token else {}))
    with hub:
        print(f"HF_ENDPOINT={hub.endpoint} HF_TOKEN={hub.token} HF_HUB_DISABLE_XET=1  (files in {root})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
