"""Ingestion jobs: background progress, cancel, delete during ingestion, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from api.jobs import DOCUMENTS, StagedFile
from api.services import Services
from api.settings import Settings
from retrieval.documents import Document
from retrieval.loaders import iter_documents

REPO = Path(__file__).resolve().parents[1]


def _corpus(folder: Path, files: int, docs: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(files):
        path = folder / f"part{f}.jsonl"
        with path.open("w") as fh:
            for i in range(docs):
                text = f"Record {f}-{i} covers subject {i % 13}. " + " ".join(
                    f"term{f}_{i}_{j}" for j in range(50)
                )
                fh.write(json.dumps({"id": f"p{f}-{i}", "title": f"Record {f}-{i}", "text": text}) + "\n")
        paths.append(path)
    return paths


def _submit(services: Services, kb: str, paths: list[Path]) -> dict[str, object]:
    info = services.metadata.ensure_kb(kb)
    job_id, folder = services.jobs.staging_dir()
    staged = []
    for p in paths:
        target = folder / p.name
        target.write_bytes(p.read_bytes())
        staged.append(StagedFile(str(target), p.name, p.name, {}))
    return services.jobs.submit(job_id, info, DOCUMENTS, staged)


def _count(services: Services, kb: str) -> int:
    info = services.metadata.get_kb(kb)
    assert info is not None
    return services.store.count(info.id, kind="chunk", state="live")


def test_job_runs_in_background_and_reports(services: Services, tmp_path: Path) -> None:
    job = _submit(services, "kb", _corpus(tmp_path / "c", 2, 5))
    assert job["status"] == "queued" and job["total"] == 2
    services.jobs.start()
    done = services.jobs.wait(str(job["id"]))
    assert done["status"] == "done" and done["done"] == 2 and "10 indexed" in done["message"]
    assert not (services.jobs.uploads_dir / str(job["id"])).exists()  # staged files cleaned up


def test_cancel_a_queued_job_and_a_running_one(services: Services, tmp_path: Path) -> None:
    queued = _submit(services, "kb", _corpus(tmp_path / "a", 1, 3))
    assert services.jobs.cancel(str(queued["id"]))["status"] == "cancelled"
    running = _submit(services, "kb", _corpus(tmp_path / "b", 6, 40))
    services.jobs.start()
    deadline = time.monotonic() + 60
    while services.jobs.get(str(running["id"]))["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    services.jobs.cancel(str(running["id"]))
    final = services.jobs.wait(str(running["id"]))
    assert final["status"] == "cancelled" and final["done"] < 6
    # Whatever was published is whole: every indexed document has all its chunks live.
    info = services.metadata.get_kb("kb")
    assert info is not None
    rows, _ = services.metadata.list_documents(info.id, 0, 1000)
    for row in rows:
        if row["status"] == "indexed":
            assert (
                services.store.count(info.id, kind="chunk", doc_id=row["doc_id"], state="live")
                == row["chunks"]
            )
    assert services.store.count(info.id, state="staged") == 0


def test_delete_during_ingestion_waits_then_removes(services: Services, tmp_path: Path) -> None:
    job = _submit(services, "kb", _corpus(tmp_path / "c", 3, 30))
    services.jobs.start()
    info = services.metadata.get_kb("kb")
    assert info is not None
    deadline = time.monotonic() + 60
    while services.metadata.get_document(info.id, "p0-0") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    services.knowledge.delete_document("kb", "p0-0")
    assert services.jobs.wait(str(job["id"]))["status"] == "done"
    assert services.metadata.get_document(info.id, "p0-0") is None
    assert services.store.count(info.id, doc_id="p0-0") == 0


def test_concurrent_uploads_to_one_kb_all_land_once(services: Services, tmp_path: Path) -> None:
    paths = _corpus(tmp_path / "c", 3, 6)
    jobs = [_submit(services, "kb", [p]) for p in paths] + [_submit(services, "kb", paths)]
    services.jobs.start()
    assert all(services.jobs.wait(str(j["id"]))["status"] == "done" for j in jobs)
    expected = sum(
        len(services.chunker().chunk("kb", d))
        for d in iter_documents(paths, max_bytes=10**8)
        if isinstance(d, Document)
    )
    assert _count(services, "kb") == expected


def _indexed(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute("select count(*) from documents where status='indexed'").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_kill_9_during_a_job_then_restart_resumes(tmp_path: Path, services: Services) -> None:
    paths = _corpus(tmp_path / "c", 4, 60)
    data = tmp_path / "data"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from api.services import Services
        from api.settings import Settings
        from tests.test_jobs import _submit
        svc = Services(Settings(data_dir=Path({str(data)!r}), auth="none", embedder="all-MiniLM-L6-v2"))
        _submit(svc, "kb", [Path(p) for p in {[str(p) for p in paths]!r}])
        svc.jobs.start()
        time.sleep(600)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGNET_")}
    env["RAGNET_EMBEDDER"] = "all-MiniLM-L6-v2"  # the fixtures' embedder
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while _indexed(data / "ragnet.db") < 40 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _indexed(data / "ragnet.db")
    assert 0 < before < 240, "the job finished (or never started) before the kill"

    resumed = Services(
        Settings(data_dir=data, auth="none", embedder="all-MiniLM-L6-v2"), embedder=services.embedder
    )
    try:
        (job,) = resumed.jobs.list()
        assert job["status"] == "running"  # as the crash left it
        resumed.jobs.start()
        final = resumed.jobs.wait(job["id"], timeout=240)
        assert final["status"] == "done" and final["done"] == 4
        expected = sum(
            len(resumed.chunker().chunk("kb", d))
            for d in iter_documents(paths, max_bytes=10**8)
            if isinstance(d, Document)
        )
        assert _count(resumed, "kb") == expected  # nothing lost, nothing duplicated
        info = resumed.metadata.get_kb("kb")
        assert info is not None
        assert resumed.store.count(info.id, state="staged") == 0
    finally:
        resumed.close()
