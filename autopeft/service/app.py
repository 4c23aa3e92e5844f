"""The autopeft REST service: submit searches, follow them, read Pareto sets, download exports.

Every endpoint but ``/health`` needs the service token in ``Authorization: Bearer <token>``; the
schema and its pages (``/openapi.json``, ``/docs``, ``/redoc``) too, since they tell a stranger
what to try. The token comes from the environment or a file and is never logged or echoed.
Request bodies use the same job spec as ``autopeft search`` (see :class:`JobRequest`), bounded
by the service's limits (:mod:`autopeft.service.limits`) and naming only shipped or allowed
sources (:mod:`autopeft.service.sources`).
"""

from __future__ import annotations

import dataclasses
import hmac
import io
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, create_model

from autopeft import reports
from autopeft.errors import AutopeftError, StoreError
from autopeft.export import FORMATS, export_trial
from autopeft.objectives import job_objectives
from autopeft.options import bounds_of, default_of, help_of
from autopeft.scheduler import JobSpec
from autopeft.service.limits import RequestError, ServiceLimits
from autopeft.service.runner import JobRunner
from autopeft.service.sources import Sources, load_failure
from autopeft.store import Store
from autopeft.trials import Fidelity


def _request_fields(declaration: type, nested: Mapping[str, type[BaseModel]] | None = None,
                    flat: Sequence[str] = ()) -> dict[str, Any]:
    """``create_model`` field definitions for the options a dataclass declares (autopeft.options):
    their types, defaults, help as description, and bounds. Fields named in ``nested`` take that
    model instead; the options of the groups named in ``flat`` are lifted to this level."""
    hints, nested = get_type_hints(declaration), nested or {}
    definitions: dict[str, Any] = {}
    for declared in dataclasses.fields(declaration):
        if declared.name in flat:
            definitions.update(_request_fields(type(declared.default_factory())))
        elif declared.name in nested:
            definitions[declared.name] = (nested[declared.name], nested[declared.name]())
        else:
            default = default_of(declared)
            definitions[declared.name] = (_json_type(hints[declared.name]), Field(
                ... if default is dataclasses.MISSING else list(default) if isinstance(default, tuple) else default,
                description=help_of(declared), **bounds_of(declared),
            ))
    return definitions


def _json_type(hint: Any) -> Any:
    """``tuple[str, ...]`` (or ``| None``) as ``list[str]``: a request holds JSON arrays."""
    args = get_args(hint)
    if get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[args[0]]
    if get_origin(hint) in (Union, UnionType):
        return Union[tuple(_json_type(arg) for arg in args)]
    return hint


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


FidelityRequest = create_model("FidelityRequest", __base__=_Request, __module__=__name__,
                               **_request_fields(Fidelity))
"""The proxy fine-tune of a job: the fields of :class:`autopeft.trials.Fidelity`."""


class ValidationRequest(BaseModel):
    """A validation of a finished job's front, as ``autopeft validate`` takes it."""

    model_config = ConfigDict(extra="forbid")
    top: int = Field(default=3, ge=0, le=100, description="best front rows to retrain")
    trials: list[int] = Field(default=[], max_length=100, description="trial numbers to retrain as well")
    steps: int | None = Field(default=None, ge=1, description="default: 4x the proxy's steps")
    train_examples: int | None = Field(default=None, ge=1, description="default: 4x the proxy's examples")


class _JobRequest(_Request):
    def to_spec(self) -> JobSpec:
        options = {**self.model_dump(exclude={"fidelity"}), **self.fidelity.model_dump()}
        options = {name: tuple(value) if isinstance(value, list) else value for name, value in options.items()}
        options["text_columns"] = options["text_columns"] or None
        return JobSpec.from_options(options)


JobRequest = create_model(
    "JobRequest", __base__=_JobRequest, __module__=__name__, __doc__="A search, as ``autopeft search`` takes it.",
    **_request_fields(JobSpec, nested={"fidelity": FidelityRequest}, flat=("task_options",)),
)
"""A search: the options :mod:`autopeft.scheduler.job_spec` declares, with the proxy fine-tune
nested under ``fidelity`` and the task options at the top level."""


def job_request(spec: JobSpec) -> dict[str, Any]:
    """The JSON body of ``POST /jobs`` for a job spec."""
    fields = spec.to_json()
    fields.update(fields.pop("task_options"))
    fields["text_columns"] = fields["text_columns"] or None
    return JobRequest.model_validate(fields).model_dump(mode="json")


TRIALS_PAGE = 1000
"""Trials per page of ``GET /jobs/{id}/trials`` when the request does not say (``limit``)."""
MAX_TRIALS_PAGE = 10000

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
        return reports.stored_status(store, store.job(job_id))

    @app.get("/jobs/{job_id}/trials", dependencies=guarded)
    def trials(
        job_id: int,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=MAX_TRIALS_PAGE, description="trials per page")] = TRIALS_PAGE,
        offset: Annotated[int, Query(ge=0, description="trials to skip, by number")] = 0,
    ) -> list[dict[str, Any]]:
        """One page of the job's trials by number; ``X-Total-Count`` says how many it has."""
        job = store.job(job_id, counted=False)
        objectives = job_objectives(job)
        response.headers["X-Total-Count"] = str(store.count_trials(job_id))
        return [reports.trial_json(t, objectives) for t in store.trials(job_id, limit=limit, offset=offset)]

    @app.get("/jobs/{job_id}/pareto", dependencies=guarded)
    def pareto(job_id: int, rung: int | None = None) -> list[dict[str, Any]]:
        job = store.job(job_id, counted=False)
        objectives = job_objectives(job)
        return [reports.trial_json(t, objectives) for t in reports.stored_front(store, job, rung)]

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
            written = export_trial(store.job(job_id), store.trial(job_id, trial), fmt, Path(folder) / "export", store)
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
