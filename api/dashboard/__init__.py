"""The operator dashboard at `/dashboard`: server-rendered pages, htmx, no build step.

`install(app)` adds the pages, the static files (CSS and the vendored htmx) and the
redirect to the login page for requests without a session.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.dashboard.pages import STATIC, LoginRequired, login_redirect
from api.dashboard.routes import router


def install(app: FastAPI) -> None:
    """Serve the dashboard from `app`."""
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.include_router(router)
    app.add_exception_handler(LoginRequired, login_redirect)
