"""Site-level views."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from .health import run_checks


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when database, broker and a worker for every queue are up; 503 otherwise."""
    checks = run_checks()
    healthy = all(check.ok for check in checks)
    return JsonResponse(
        {"status": "ok" if healthy else "unhealthy", "checks": [c.as_dict() for c in checks]},
        status=200 if healthy else 503,
    )
