"""One router per API dialect; each route is a thin adapter: wire request -> job -> wire response."""

from . import cohere, collections, openai, ops, rerank, score, tei

__all__ = ["ALL_ROUTERS"]

ALL_ROUTERS = [openai.router, tei.router, tei.model_router, rerank.router, cohere.router, score.router,
               collections.router, ops.router]
