"""The autopeft REST service: submit searches, follow them, read Pareto sets, download exports.

Every endpoint but ``/health`` needs the service token in ``Authorization: Bearer <token>``; the
schema and its pages (``/openapi.json``, ``/docs``, ``/redoc``) too, since they tell a stranger
what to try. The token comes from the environment or a file and is never logged or echoed.
Request bodies use the same job spec as ``autopeft search`` (see :class:`JobRequest`), bounded
by the service's limits (:mod:`autopeft.service.limits`) and naming only shipped or allowed
sources (:mod:`autopeft.service.sources`).
"""

from __future__ import annotations

import hmac
import io
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from autopeft import reports
from autopeft.errors import AutopeftError, StoreError
from autopeft.export import FORMATS, export_trial
from autopeft.objectives import job_objectives
from autopeft.scheduler import JobSpec, TaskOptions
from autopeft.service.limits import RequestError, ServiceLimits
from autopeft.service.runner import JobRunner
from autopeft.service.sources import Sources, load_failure
from autopeft.store import Store
from autopeft.trials import Fidelity


class FidelityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train_examples: int = Fidelity.train_examples
    steps: int = Fidelity.steps
    batch_size: int = Fidelity.batch_size
    max_length: int = Fidelity.max_length
    learning_rate: float = Fidelity.learning_rate
    eval_examples: int | None = Field(default=None, ge=1)
    lr_rescues: int = Field(default=Fidelity.lr_rescues, ge=0, le=2)


class ValidationRequest(BaseModel):
    """A validation of a finished job's front, as ``autopeft validate`` takes it."""

    model_config = ConfigDict(extra="forbid")
    top: int = Field(default=3, ge=0, le=100, description="best front rows to retrain")
    trials: list[int] = Field(default=[], max_length=100, description="trial numbers to retrain as well")
    steps: int | None = Field(default=None, ge=1, description="default: 4x the proxy's steps")
    train_examples: int | None = Field(default=None, ge=1, description="default: 4x the proxy's examples")


class JobRequest(BaseModel):
    """A search, as ``autopeft search`` takes it."""

    model_config = ConfigDict(extra="forbid")
    model: str
    task: str
    space: str = "lora"
    trials: int = Field(default=16, description="budget in trial units")
    workers: int = 1
    optimizer: str = "mobo"
    seed: int = 0
    fidelity: FidelityRequest = FidelityRequest()
    text_columns: list[str] | None = None
    label_column: str | None = None
    metric: str | None = None
    also_minimize: list[str] = []
    max_trainable_fraction: float | None = None
    max_time_s: float | None = None
    max_worker_hours: float | None = None
    rungs: int = 1
    eta: float = 3.0
    max_attempts: int = 3
    warm_start: int | None = None
    cpus_per_worker: int = 1
    gpus_per_worker: float = 0.0
    search_examples: int | None = Field(default=None, ge=1)
    confirm_seeds: int = Field(default=JobSpec.confirm_seeds, ge=1)
    defaults: bool = JobSpec.defaults

    def to_spec(self) -> JobSpec:
        fields = self.model_dump(exclude={"fidelity", "text_columns", "label_column", "metric"})
        fields["also_minimize"] = tuple(fields["also_minimize"])
        return JobSpec(
            **fields,
            fidelity=Fidelity(**self.fidelity.model_dump()),
            task_options=TaskOptions(
                text_columns=tuple(self.text_columns) if self.text_columns else None,
                label_column=self.label_column,
                metric=self.metric,
            ),
        )


def job_request(spec: JobSpec) -> dict[str, Any]:
    """The JSON body of ``POST /jobs`` for a job spec."""
    fields = spec.to_json()
    options = fields.pop("task_options")
    fields.update(
        text_columns=list(options["text_columns"]) if options["text_columns"] else None,
        label_column=options["label_column"],
        metric=options["metric"],
        also_minimize=list(fields["also_minimize"]),
    )
    return JobRequest.model_validate(fields).model_dump(mode="json")


# module level: FastAPI resolves the (postponed) annotations of ``authorised`` in this namespace
_BEARER = HTTPBearer(auto_error=False, description="the service token (AUTOPEFT_TOKEN)")


def create_app(
    store: Store,
    token: str,
    runner: JobRunner,
    limits: ServiceLimits = ServiceLimits(),
    allow_roots: Sequence[Path] = (),
) -> FastAPI:
    """The service on ``store``; ``runner`` drives submitted jobs.

    ``limits`` bound each job; requests may name files only inside ``allow_roots`` (none by default).
    """
    if not token:
        raise AutopeftError("the service needs a token: set AUTOPEFT_TOKEN or pass --token-file")
    sources = Sources.under(allow_roots)
    app = FastAPI(title="autopeft", version="0.1.0", description=__doc__,
                  openapi_url=None, docs_url=None, redoc_url=None)

    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorised)]

    @app.exception_handler(AutopeftError)
    async def user_error(_, exc: AutopeftError) -> JSONResponse:
        if isinstance(exc, RequestError):
            return JSONResponse(status_code=exc.status, content=exc.body())
        message = str(exc)
        if isinstance(exc, StoreError) and ("no job" in message or "has no trial" in message):
            # the store's URL, which the message ends with, is the server's business
            return JSONResponse(status_code=404, content={"detail": message.split(" in the store at ")[0]})
        return JSONResponse(status_code=400, content={"detail": message})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", dependencies=guarded, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="autopeft")

    @app.get("/redoc", dependencies=guarded, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="autopeft")

    @app.post("/jobs", status_code=202, dependencies=guarded)
    def submit(request: JobRequest) -> dict[str, Any]:
        spec = request.to_spec()
        spec.check()
        spec = sources.resolved(limits.bounded(spec))
        try:
            job_id = runner.submit(spec)
        except RequestError:
            raise
        except AutopeftError as exc:
            raise load_failure(exc) from exc
        return reports.job_json(store.job(job_id))

    @app.get("/jobs", dependencies=guarded)
    def jobs() -> list[dict[str, Any]]:
        return [reports.job_json(job) for job in store.jobs()]

    @app.get("/jobs/{job_id}", dependencies=guarded)
    def status(job_id: int) -> dict[str, Any]:
        job = store.job(job_id)
        return reports.status_json(job, store.trials(job_id), job_objectives(job), store.hypervolumes(job_id))

    @app.get("/jobs/{job_id}/trials", dependencies=guarded)
    def trials(job_id: int) -> list[dict[str, Any]]:
        job = store.job(job_id)
        return [reports.trial_json(t, job_objectives(job)) for t in store.trials(job_id)]

    @app.get("/jobs/{job_id}/pareto", dependencies=guarded)
    def pareto(job_id: int, rung: int | None = None) -> list[dict[str, Any]]:
        job = store.job(job_id)
        objectives = job_objectives(job)
        return [reports.trial_json(t, objectives) for t in reports.reported_front(store.trials(job_id), objectives, rung)]

    @app.post("/jobs/{job_id}/validate", status_code=202, dependencies=guarded)
    def validate(job_id: int, request: ValidationRequest) -> dict[str, Any]:
        """Start retraining the front on dev in the background; ``GET /jobs/{id}`` shows ``validation``."""
        limits.check_validation(request.steps, request.train_examples)
        runner.validate(job_id, top=request.top, numbers=tuple(request.trials), steps=request.steps,
                        train_examples=request.train_examples)
        return {"id": job_id, "validating": True}

    @app.post("/jobs/{job_id}/cancel", dependencies=guarded)
    def cancel(job_id: int) -> dict[str, Any]:
        return {"id": job_id, "state": store.request_cancel(job_id)}

    @app.get("/jobs/{job_id}/export", dependencies=guarded)
    def export(job_id: int, trial: int, fmt: Annotated[str, Query(alias="format")] = "peft") -> Response:
        if fmt not in FORMATS:
            raise HTTPException(status_code=400, detail=f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
        with tempfile.TemporaryDirectory() as folder:
            written = export_trial(store.job(job_id), store.trial(job_id, trial), fmt, Path(folder) / "export")
            archive = _zip(written, Path(folder) / "export")
        filename = f"autopeft-job{job_id}-trial{trial}-{fmt}.zip"
        return Response(archive, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    return app


def _zip(files: list[Path], root: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()
