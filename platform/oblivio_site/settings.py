"""Oblivio settings: embedded defaults that run anywhere, overridden by environment variables.

Defaults: SQLite database and a filesystem Celery broker under ``OBLIVIO_HOME`` (no server needed).
Production: ``DATABASE_URL=postgresql://...`` and ``CELERY_BROKER_URL=redis://...``.
Every variable is listed in the README's configuration table.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.home import DJANGO_SECRET_KEY, ensure_secrets, oblivio_home, secret
from mllm.unlearn.ladder import default_ladder

HOME = oblivio_home()
ensure_secrets()
BASE_DIR = Path(__file__).resolve().parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("OBLIVIO_SECRET_KEY") or secret(DJANGO_SECRET_KEY).decode()
DEBUG = _env_bool("OBLIVIO_DEBUG", False)
ALLOWED_HOSTS = _env_list("OBLIVIO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# --- Deployment: `demo` serves plain HTTP on loopback; `production` sits behind a TLS proxy ----------
OBLIVIO_DEPLOYMENT = os.environ.get("OBLIVIO_DEPLOYMENT", "demo")
if OBLIVIO_DEPLOYMENT not in {"demo", "production"}:
    raise ImproperlyConfigured("OBLIVIO_DEPLOYMENT must be 'demo' or 'production'")
_PRODUCTION = OBLIVIO_DEPLOYMENT == "production"
X_FRAME_OPTIONS = "DENY"
if _PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("OBLIVIO_DEBUG must be off when OBLIVIO_DEPLOYMENT=production")
    # The TLS-terminating proxy sets X-Forwarded-Proto; plain-HTTP requests are redirected.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _env_bool("OBLIVIO_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load-balancer probes over plain HTTP
    SECURE_HSTS_SECONDS = int(os.environ.get("OBLIVIO_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("OBLIVIO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = _env_bool("OBLIVIO_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "oblivio_site",
    "core",
    "hierarchy",
    "compliance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "oblivio_site.urls"
WSGI_APPLICATION = "oblivio_site.wsgi.application"
ASGI_APPLICATION = "oblivio_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: embedded SQLite unless DATABASE_URL says otherwise -----------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{HOME / 'oblivio.sqlite3'}",
        # Production keeps connections (one per server thread) instead of connecting per request.
        conn_max_age=int(os.environ.get("OBLIVIO_DB_CONN_MAX_AGE", "60" if _PRODUCTION else "0")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + immediate transactions let the web server and the worker write the same file.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("OBLIVIO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = HOME / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve app static files without a collectstatic step

# --- Celery: filesystem broker under OBLIVIO_HOME unless CELERY_BROKER_URL says otherwise -------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://localhost/"  # a host, or kombu warns
_BROKER_IS_FILESYSTEM = CELERY_BROKER_URL.startswith("filesystem://")
if _BROKER_IS_FILESYSTEM:
    _broker_dir = HOME / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # The request path publishes without retrying (one short connection attempt); whatever is not
    # published stays in the webhook outbox for the sweeper. Workers reconnect on their own.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 0, "socket_connect_timeout": 1.0}
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 1.0
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or (
    f"file://{HOME / 'celery-results'}" if _BROKER_IS_FILESYSTEM else CELERY_BROKER_URL)
if CELERY_RESULT_BACKEND.startswith("file://"):
    Path(CELERY_RESULT_BACKEND.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE

# Signed audit checkpoints every interval (also when idle: verification fails once the newest one is
# older than interval + grace), each appended to the witness file and POSTed to the auditor's URL.
OBLIVIO_AUDIT_CHECKPOINT_SECONDS = float(os.environ.get("OBLIVIO_AUDIT_CHECKPOINT_SECONDS", "600"))
OBLIVIO_AUDIT_CHECKPOINT_GRACE_SECONDS = float(os.environ.get("OBLIVIO_AUDIT_CHECKPOINT_GRACE_SECONDS",
                                                              str(OBLIVIO_AUDIT_CHECKPOINT_SECONDS)))
OBLIVIO_AUDIT_WITNESS_FILE = os.environ.get("OBLIVIO_AUDIT_WITNESS_FILE") or str(
    HOME / "witness" / "audit-checkpoints.jsonl")
OBLIVIO_AUDIT_WITNESS_URL = os.environ.get("OBLIVIO_AUDIT_WITNESS_URL", "")
#: How often the beat scheduler verifies the whole chain and the state it describes (a full read).
OBLIVIO_AUDIT_VERIFY_SECONDS = float(os.environ.get("OBLIVIO_AUDIT_VERIFY_SECONDS", "3600"))
CELERY_BEAT_SCHEDULE = {
    "audit-checkpoint": {"task": "core.audit_checkpoint", "schedule": OBLIVIO_AUDIT_CHECKPOINT_SECONDS},
    "audit-verify": {"task": "core.audit_verify", "schedule": OBLIVIO_AUDIT_VERIFY_SECONDS},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(HOME / "celerybeat-schedule")

OBLIVIO_WORKER_PING_TIMEOUT = float(os.environ.get("OBLIVIO_WORKER_PING_TIMEOUT", "1.5"))

# --- Audit: retention is a legal floor (HIPAA documentation: 6 years) -----------------------
OBLIVIO_AUDIT_RETENTION_YEARS = int(os.environ.get("OBLIVIO_AUDIT_RETENTION_YEARS", "6"))
if OBLIVIO_AUDIT_RETENTION_YEARS < 6:
    raise ImproperlyConfigured("OBLIVIO_AUDIT_RETENTION_YEARS must be at least 6 (HIPAA 45 CFR 164.316)")

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # API keys (hospital systems) first, so a 401 says "Bearer"; people use the session (+ CSRF).
    "DEFAULT_AUTHENTICATION_CLASSES": ["compliance.api.authentication.ApiKeyAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["compliance.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_METADATA_CLASS": None,
    "EXCEPTION_HANDLER": "compliance.api.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "compliance.api.pagination.StrictLimitOffsetPagination",
    "DEFAULT_THROTTLE_CLASSES": ["compliance.api.throttling.ResilientScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "read": os.environ.get("OBLIVIO_API_RATE_READ", "600/min"),
        "write": os.environ.get("OBLIVIO_API_RATE_WRITE", "120/min"),
        "lookup": os.environ.get("OBLIVIO_API_RATE_LOOKUP", "120/min"),
    },
}
# Bodies larger than this are refused (413 on the API, 400 elsewhere); API bodies are small JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("OBLIVIO_MAX_BODY_BYTES", str(256 * 1024)))

# --- Cache (throttle counters): shared by every gunicorn worker ------------------------------
# Redis when OBLIVIO_CACHE_URL (or a Redis broker) is configured; else files under OBLIVIO_HOME,
# which every worker process on this machine shares.
_CACHE_URL = os.environ.get("OBLIVIO_CACHE_URL") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis://") else "")
CACHES = {"default": (
    {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL,
     "KEY_PREFIX": "oblivio-cache",
     # Fail fast: while Redis is down the throttle counts locally (compliance.api.throttling).
     "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}}
    if _CACHE_URL else
    {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(HOME / "cache")})}
#: While the shared cache is unreachable, throttle counters are per process; retried after this.
OBLIVIO_CACHE_RETRY_SECONDS = float(os.environ.get("OBLIVIO_CACHE_RETRY_SECONDS", "10"))
SPECTACULAR_SETTINGS = {
    "TITLE": "Oblivio API",
    "DESCRIPTION": "Track, unlearn, verify and certify patient-data forget requests.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RefusalReasonEnum": "compliance.api.serializers.REFUSAL_REASONS",
        "RequesterTypeEnum": "compliance.api.serializers.REQUESTER_TYPES",
    },
    # After the enum hook: the input rules' inline enums stay inline.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "compliance.api.schema.input_rules",
                             "oblivio_site.serving.document_server_errors"],
}

# --- Forget requests, webhooks -----------------------------------------------------------
# Four-eyes: the person who submitted a request may not approve it.
OBLIVIO_FOUR_EYES = _env_bool("OBLIVIO_FOUR_EYES", True)
# Answer-by days for requests no statute times (HIPAA-covered, DUA, consent withdrawal, policy).
OBLIVIO_POLICY_DEADLINES = {
    regulation: {"days": int(os.environ.get("OBLIVIO_POLICY_DEADLINE_DAYS", "30")),
                 "extension_days": int(os.environ.get("OBLIVIO_POLICY_EXTENSION_DAYS", "30"))}
    for regulation in ("data_use_agreement", "consent_withdrawal", "institution_policy")
}
# SSRF guard: webhook hosts resolving to loopback/private/link-local addresses are refused unless on.
OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = _env_bool("OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False)
OBLIVIO_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("OBLIVIO_WEBHOOK_TIMEOUT_SECONDS", "5"))
OBLIVIO_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("OBLIVIO_WEBHOOK_MAX_ATTEMPTS", "20"))
OBLIVIO_WEBHOOK_BACKOFF_SECONDS = float(os.environ.get("OBLIVIO_WEBHOOK_BACKOFF_SECONDS", "30"))
OBLIVIO_WEBHOOK_BACKOFF_CAP_SECONDS = float(os.environ.get("OBLIVIO_WEBHOOK_BACKOFF_CAP_SECONDS", "3600"))
#: After a failed publish, requests skip publishing for this long (the sweeper delivers meanwhile).
OBLIVIO_DISPATCH_RETRY_SECONDS = float(os.environ.get("OBLIVIO_DISPATCH_RETRY_SECONDS", "10"))
CELERY_BEAT_SCHEDULE["webhook-sweep"] = {
    "task": "compliance.webhook_sweep",
    "schedule": float(os.environ.get("OBLIVIO_WEBHOOK_SWEEP_SECONDS", "60"))}

# Idempotency-Keys are replayed for at least this long, then purged hourly.
OBLIVIO_IDEMPOTENCY_TTL_HOURS = float(os.environ.get("OBLIVIO_IDEMPOTENCY_TTL_HOURS", "24"))
if OBLIVIO_IDEMPOTENCY_TTL_HOURS <= 0:
    raise ImproperlyConfigured("OBLIVIO_IDEMPOTENCY_TTL_HOURS must be positive")
CELERY_BEAT_SCHEDULE["idempotency-purge"] = {"task": "compliance.idempotency_purge", "schedule": 3600.0}

# --- Unlearning pipeline: jobs on the ``ml`` queue, leases, escalation ladder --------------------
def _env_json(name: str, default: object) -> object:
    import json

    text = os.environ.get(name)
    try:
        return json.loads(text) if text else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be JSON") from None


OBLIVIO_PIPELINE_ENGINE = os.environ.get("OBLIVIO_PIPELINE_ENGINE", "compliance.pipeline.engine.MllmEngine")
OBLIVIO_MODEL_DEPLOYMENT = os.environ.get("OBLIVIO_MODEL_DEPLOYMENT", "default")  # registry name
OBLIVIO_ARTIFACT_DIR = os.environ.get("OBLIVIO_ARTIFACT_DIR", "")  # default: $OBLIVIO_HOME/artifacts
#: Approved requests of one institution arriving within this window share one job.
OBLIVIO_JOB_BATCH_WINDOW_SECONDS = float(os.environ.get("OBLIVIO_JOB_BATCH_WINDOW_SECONDS", "10"))
#: A step's lease; the worker renews it every heartbeat, a dead worker's job is taken over after it.
OBLIVIO_JOB_LEASE_SECONDS = float(os.environ.get("OBLIVIO_JOB_LEASE_SECONDS", "60"))
OBLIVIO_JOB_HEARTBEAT_SECONDS = float(os.environ.get("OBLIVIO_JOB_HEARTBEAT_SECONDS", "10"))
#: A job whose step task has not started for this long gets its task sent again (lost message).
OBLIVIO_JOB_REDISPATCH_SECONDS = float(os.environ.get("OBLIVIO_JOB_REDISPATCH_SECONDS", "600"))
OBLIVIO_JOB_MAX_CLAIMS = int(os.environ.get("OBLIVIO_JOB_MAX_CLAIMS", "6"))
#: Hard time limit of one step (unlearn or verify of a large model on a GPU can take hours).
OBLIVIO_JOB_STEP_TIME_LIMIT = int(os.environ.get("OBLIVIO_JOB_STEP_TIME_LIMIT", str(12 * 3600)))
if OBLIVIO_JOB_HEARTBEAT_SECONDS * 2 > OBLIVIO_JOB_LEASE_SECONDS:
    raise ImproperlyConfigured("OBLIVIO_JOB_LEASE_SECONDS must be at least twice the heartbeat")
#: The escalation ladder: Oblivio's hierarchy-aware method, the same with twice the steps, then
#: exact retraining (of the affected shards of a sharded model, else of the whole model from its clean
#: start: mllm.unlearn.methods.exact), then a person.
OBLIVIO_UNLEARN_LADDER = _env_json("OBLIVIO_UNLEARN_LADDER", default_ladder())
OBLIVIO_VERDICT_THRESHOLDS = _env_json("OBLIVIO_VERDICT_THRESHOLDS", {})
OBLIVIO_GUARD_STAYS_ON = _env_bool("OBLIVIO_GUARD_STAYS_ON", False)
OBLIVIO_PUBLIC_URL = os.environ.get("OBLIVIO_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
CELERY_TASK_ROUTES = {"compliance.job_*": {"queue": "ml"}}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # An unacknowledged ML task is redelivered only after this; it must outlast the longest step
    # (a dead worker's job is taken over earlier, through its lease, by the pipeline sweep).
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = OBLIVIO_JOB_STEP_TIME_LIMIT + 3600
CELERY_BEAT_SCHEDULE["pipeline-sweep"] = {
    "task": "compliance.pipeline_sweep",
    "schedule": float(os.environ.get("OBLIVIO_PIPELINE_SWEEP_SECONDS", "15"))}

# --- Logging: one JSON object per line on stderr; identifiers only ever as keyed hashes ------
# Containers collect stderr. `oblivio demo` pipes its web server's and worker's stderr into rotating
# files in OBLIVIO_LOG_DIR (oblivio_site.logfiles).
OBLIVIO_LOG_DIR = Path(os.environ.get("OBLIVIO_LOG_DIR") or HOME / "logs")
OBLIVIO_LOG_MAX_BYTES = int(os.environ.get("OBLIVIO_LOG_MAX_BYTES", str(10 * 1024 * 1024)))
OBLIVIO_LOG_BACKUPS = int(os.environ.get("OBLIVIO_LOG_BACKUPS", "5"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": os.environ.get("OBLIVIO_LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's request logger prints request paths; paths never carry PHI by design, and
        # 4xx noise is left to the access log of the front proxy.
        "django.request": {"level": "ERROR"},
    },
}
