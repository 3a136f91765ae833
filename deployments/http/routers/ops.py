"""Operations: `GET /info`, `GET /health`, `GET /metrics`."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import HealthResponse, InfoResponse, Limits, ServedModel

from ..metrics import CONTENT_TYPE
from ..version import VERSION
from ..wire import model_service, respond

router = APIRouter(tags=["service"])


@router.get("/info", response_model=InfoResponse, summary="Models, dimensions, backends, limits, version")
async def info(request: Request) -> Response:
    service = model_service(request)
    described = await service.describe()
    models = [ServedModel(id=e.name, deployment=e.deployment, default=e.default, **d)
              for e, d in zip(service.entries, described, strict=True)]
    return respond(InfoResponse(version=VERSION, models=models, limits=Limits(**service.limits.model_dump())))


@router.get("/health", response_model=HealthResponse, summary="200 when every deployment answers, else 503",
            responses={503: {"model": HealthResponse}})
async def health(request: Request) -> Response:
    states = await model_service(request).health()
    ok = all(v == "ok" for v in states.values())
    return respond(HealthResponse(status="ok" if ok else "unavailable", deployments=states),
                   status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(model_service(request).metrics.render(), media_type=CONTENT_TYPE)
