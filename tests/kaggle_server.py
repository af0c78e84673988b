"""A recording Kaggle on 127.0.0.1 for the REAL kaggle client: it answers the calls paddy makes
(submissions, blobs, datasets, notebooks) the way Kaggle's API does, and keeps every request.

kagglesdk looks its endpoint up in `kagglesdk.kaggle_env._env_to_endpoint`; the fixtures point the
production entry here, so every byte the client sends is its own.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

COMPETITIONS = "/v1/competitions.CompetitionApiService"  # the path of submission calls


class RecordingKaggle(BaseHTTPRequestHandler):
    """Answers like Kaggle and appends (method, path, headers, body) to the server's `requests`."""

    server: KaggleServer

    def _reply(self, body: dict[str, Any] | bytes, status: int = 200) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any]:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        try:
            return json.loads(body) if body else {}
        except ValueError:
            return {}

    def do_POST(self):
        body = self._record()
        server = self.server
        if server.forbidden:
            self.send_error(403)
            return
        name = self.path.rsplit("/", 1)[-1]
        answer = getattr(server, f"answer_{name}", None)
        if answer is None:
            self.send_error(404)
            return
        reply = answer(body)
        if isinstance(reply, int):
            self.send_error(reply)
        else:
            self._reply(reply)

    def do_PUT(self):
        self._record()
        if self.server.refuse_uploads:
            self.send_error(500)
        else:
            self._reply({})

    def do_GET(self):
        self._record()
        path = self.server.output_files.get(self.path.removeprefix("/output/"))
        if path is None:
            self.send_error(404)
        else:
            self._reply(path.read_bytes())

    def log_message(self, *args):
        pass


class KaggleServer(ThreadingHTTPServer):
    """The recorded requests, and what this Kaggle holds: datasets, notebook states, output files."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingKaggle)
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.refuse_uploads = False
        self.forbidden = False
        self.datasets: set[str] = set()
        self.statuses: list[str] = ["COMPLETE"]  # each status call takes the next; the last one stays
        self.failure_message = ""
        self.output_files: dict[str, Path] = {}
        self.log = "paddy kernel: wrote /kaggle/working/submission.csv"
        self.version = 1
        self.submissions: list[dict[str, Any]] = []  # what ListSubmissions answers, as Kaggle's JSON has them

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def calls(self, suffix: str) -> list[dict[str, Any]]:
        """The JSON bodies of the POSTs to an endpoint (e.g. 'SaveKernel'), in order."""
        return [json.loads(body) for method, path, _, body in self.requests if path.endswith(f"/{suffix}")]

    def uploads(self) -> list[bytes]:
        return [body for method, _, _, body in self.requests if method == "PUT"]

    def serve_output(self, folder: Path) -> None:
        """A notebook's /kaggle/working, file by file, as its output."""
        self.output_files = {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}

    # Each answer_<Call> answers POST .../<Call>: a JSON reply, or an HTTP error code.
    def answer_StartSubmissionUpload(self, body):
        return {"token": "blob-token", "createUrl": f"{self.url}/upload/blob"}

    def answer_CreateSubmission(self, body):
        return {"message": "Successfully submitted to Paddy Doctor", "ref": 42}

    def answer_ListSubmissions(self, body):
        return {"submissions": self.submissions[: body.get("pageSize") or 20]}

    def answer_CreateCodeSubmission(self, body):
        return {"message": "Your code submission was queued", "ref": 43}

    def answer_StartBlobUpload(self, body):
        return {"token": f"token-{body.get('name')}", "createUrl": f"{self.url}/upload/{body.get('name')}"}

    def answer_GetDatasetStatus(self, body):
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        return {"status": "READY"} if ref in self.datasets else 404

    def answer_CreateDataset(self, body):
        self.datasets.add(f"{body['ownerSlug']}/{body['slug']}")
        return {
            "ref": f"{body['ownerSlug']}/{body['slug']}",
            "url": "https://www.kaggle.com/datasets/x",
            "status": "ok",
        }

    def answer_CreateDatasetVersion(self, body):
        return {"ref": f"{body['ownerSlug']}/{body['datasetSlug']}", "url": "https://www.kaggle.com/x", "status": "ok"}

    def answer_SaveKernel(self, body):
        self.version += 1
        url = f"https://www.kaggle.com/code/{body['slug']}"
        return {"ref": f"/code/{body['slug']}", "url": url, "versionNumber": self.version, "kernelId": 7}

    def answer_GetKernelSessionStatus(self, body):
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"status": status, "failureMessage": self.failure_message}

    def answer_ListKernelSessionOutput(self, body):
        files = [{"fileName": name, "url": f"{self.url}/output/{name}"} for name in self.output_files]
        return {"files": files, "log": self.log}


def start_kaggle(monkeypatch) -> KaggleServer:
    """A recording Kaggle in a thread; the kaggle client's production traffic goes to it."""
    from kagglesdk import kaggle_env

    server = KaggleServer()
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.PROD, server.url)
    # shutdown() waits for serve_forever's next poll: every 0.5 s by default, half a second a test
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server
